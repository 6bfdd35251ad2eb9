"""A missing optional package is a usage error naming the install line (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Cli, assert_one_line_error, write


def _without(tmp_path: Path, package: str) -> dict[str, str]:
    """An environment in which ``package`` is not installed: what Python raises
    for a missing package, put first on the path."""
    shadow = tmp_path / f"without-{package}"
    write(shadow / package / "__init__.py",
          f"raise ModuleNotFoundError(\"No module named '{package}'\", name={package!r})\n")
    return {"PYTHONPATH": str(shadow)}


@pytest.mark.parametrize("package", ["sqlalchemy", "fastapi"])
def test_server_without_its_extra(cli: Cli, tmp_path: Path, package: str) -> None:
    r = cli("server", "--port", "0", env=_without(tmp_path, package))
    assert_one_line_error(r, 2)
    assert "pip install 'livedata[server]'" in r.stderr and package in r.stderr


def test_image_conversion_without_its_extra(vault_cli: Cli, tmp_path: Path) -> None:
    write(vault_cli.cwd / "a.png", b"\\x89PNG\\r\\n\\x1a\\n not really")
    vault_cli.ok("upload", "a.png")
    r = vault_cli("convert", "a.png", "--to", "jpg", env=_without(tmp_path, "PIL"))
    assert r.code in (2, 8), r.stderr
    assert "pip install 'livedata[convert]'" in r.stderr and "Traceback" not in r.stderr
