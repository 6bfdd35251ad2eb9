"""Office documents with LibreOffice, headless.

Each job gets its own user profile inside the private working folder
(``-env:UserInstallation``), so two conversions never share a profile (nor
its lock) and nothing of the document stays in ``~/.config/libreoffice``.
The modules installed (Writer, Calc, Impress) decide the formats offered.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path

from livedata_cli.convert.base import Engine, Request, run_tool
from livedata_cli.errors import ConversionFailed

# module registry file -> (inputs, outputs)
_MODULES = {
    "writer.xcd": ({"doc", "docx", "odt", "rtf", "wpd"}, {"pdf", "docx", "odt", "doc", "rtf"}),
    "calc.xcd": ({"xls", "xlsx", "ods"}, {"pdf", "xlsx", "ods", "csv"}),
    "impress.xcd": ({"ppt", "pptx", "odp"}, {"pdf", "pptx", "odp"}),
}


class LibreOffice(Engine):
    name = "libreoffice"
    hint = "apt install --no-install-recommends libreoffice-writer-nogui"

    def available(self) -> bool:
        return _program() is not None and bool(self.conversions())

    def version(self) -> str:
        return _version()

    def conversions(self) -> dict[str, set[str]]:
        program = _program()
        if program is None:
            return {}
        registry = program.parent.parent / "share" / "registry"
        out: dict[str, set[str]] = {}
        for module, (ins, outs) in _MODULES.items():
            if (registry / module).exists():
                for src in ins:
                    out.setdefault(src, set()).update(outs - {src})
        return out

    def convert(self, req: Request) -> None:
        program = _program()
        assert program is not None
        profile = req.workdir / "lo-profile"
        outdir = req.workdir / "lo-out"
        outdir.mkdir(exist_ok=True)
        out = run_tool(
            [
                str(program), "--headless", "--invisible", "--nologo", "--norestore", "--nolockcheck",
                "--nodefault", f"-env:UserInstallation={profile.as_uri()}",
                "--convert-to", req.dst_fmt, "--outdir", str(outdir), str(req.src),
            ],
            name="libreoffice", workdir=req.workdir, timeout=req.timeout,
        )
        made = outdir / f"{req.src.stem}.{req.dst_fmt}"
        if not made.exists():  # LibreOffice says "Error: ..." on stdout and exits 0
            detail = " / ".join(ln.strip() for ln in out.splitlines() if ln.strip()) or "no output written"
            raise ConversionFailed(f"libreoffice failed: {detail[-300:]}")
        made.replace(req.dst)
        req.progress(1.0)


@cache
def _program() -> Path | None:
    found = shutil.which("soffice") or shutil.which("libreoffice")
    if found is None:
        return None
    path = Path(found).resolve()
    return path if path.exists() else None


@cache
def _version() -> str:
    program = _program()
    if program is None:
        return ""
    try:
        r = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return " ".join(r.stdout.split()[1:2])
