"""What each store kind can do beyond the ObjectStore protocol, and the rule
that callers ask by ``isinstance(store, Capability)`` (livedata_cli/stores/__init__.py):
never by probing a store for a method nor by reading its URL."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import store_kinds
from store_kinds import KindVault

from livedata_cli.stores import (
    Configurable,
    LinkSharing,
    LocalFolder,
    PresignedLinks,
    RangedReads,
    ResumableWrites,
    ServerAudit,
    ShareHosting,
)

pytestmark = pytest.mark.inprocess

kind_vault, moto_url, s3 = store_kinds.kind_vault, store_kinds.moto_url, store_kinds.s3

CAPABILITIES = (
    LocalFolder, RangedReads, ResumableWrites, LinkSharing, PresignedLinks, ShareHosting, ServerAudit, Configurable,
)
EXPECTED: dict[str, set[type]] = {
    "folder": {LocalFolder},
    "s3": {RangedReads, ResumableWrites, LinkSharing, PresignedLinks, Configurable},
    "api": {RangedReads, LinkSharing, ShareHosting, ServerAudit},
}
SHARE_KIND = {"folder": "file", "s3": "s3", "api": "api"}  # what share_links journals

SOURCE = Path(__file__).resolve().parent.parent / "livedata_cli"


def test_each_store_kind_has_its_capabilities_and_no_other(kind_vault: KindVault) -> None:
    from livedata_cli.server import spools
    from livedata_cli.vault import share_links

    kind = kind_vault.kind
    with kind_vault.raw() as store:
        has = {cap for cap in CAPABILITIES if isinstance(store, cap)}
        assert has == EXPECTED[kind], sorted(c.__name__ for c in has ^ EXPECTED[kind])
        assert store.remote is (kind != "folder")
        assert store.packs is True
        assert share_links.store_kind(store) == SHARE_KIND[kind]
        assert spools.is_s3(store) is (kind == "s3")
        config = store.get_bytes("config")
        if isinstance(store, RangedReads):  # one request for a range, the object's size with it
            assert store.read_range("config", 2, 9) == (config[2:9], len(config))
            with store.open_range("config", 3, 4) as f:
                assert f.read(4) == config[3:7]
        if isinstance(store, LocalFolder):
            assert (store.root / "config").read_bytes() == config
            store.check()
        if isinstance(store, ResumableWrites):  # init leaves no upload behind
            assert list(store.list_uploads("data/")) == []


# -- the rule ---------------------------------------------------------------------------
def _names_a_store(node: ast.expr) -> bool:
    """``store``, ``self.store``, ``vault.store``, ``trail.store``, ``c.store``…"""
    return (isinstance(node, ast.Name) and node.id == "store") or (
        isinstance(node, ast.Attribute) and node.attr == "store"
    )


def _probes(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, code) of each probe of a store: ``getattr``/``hasattr`` of a named attribute,
    ``startswith`` on its URL or against ``s3://``."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (
            isinstance(f, ast.Name) and f.id in ("getattr", "hasattr") and len(node.args) >= 2
            and _names_a_store(node.args[0]) and isinstance(node.args[1], ast.Constant)
        ):
            yield node.lineno, ast.unparse(node)
        elif isinstance(f, ast.Attribute) and f.attr == "startswith":
            on_url = isinstance(f.value, ast.Attribute) and f.value.attr == "url" and _names_a_store(f.value.value)
            prefixes = [
                c.value for arg in node.args for c in ast.walk(arg)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            ]
            if on_url or any(p.startswith("s3://") for p in prefixes):
                yield node.lineno, ast.unparse(node)


def test_the_rule_catches_the_probes_it_forbids() -> None:
    old = '''
fetch = getattr(trail.store, "server_audit", None)
ranged = getattr(store, "read_range", None)
remote = bool(getattr(self.store, "remote", False)) or not hasattr(self.store, "root")
url = str(getattr(store, "url", ""))
if url.startswith("s3://"):
    pass
is_s3 = store.url.startswith("s3://")
api = vault.store.url.startswith(("https://", "http://"))
fine = isinstance(store, RangedReads) and getattr(vault, "store_lock", None) and link.startswith("https://")
'''
    assert sorted(line for line, _ in _probes(ast.parse(old))) == [2, 3, 4, 4, 5, 6, 8, 9]


def test_no_store_is_probed_outside_stores() -> None:
    found = [
        f"{path.relative_to(SOURCE.parent)}:{line}: {code}"
        for path in sorted(SOURCE.rglob("*.py"))
        if "stores" not in path.relative_to(SOURCE).parts[:1]
        for line, code in sorted(_probes(ast.parse(path.read_text(), str(path))))
    ]
    assert not found, "test a capability with isinstance (livedata_cli/stores/__init__.py):\n" + "\n".join(found)
