"""Download: what a REF names (:func:`what_is`), and its files written here.

A REF is a vault path, a folder prefix, a version or object id, a share file
or link, or the id of a share addressed to this account.  A file is read by
``reading.py`` (every byte authenticated before it reaches its name); a tree
is restored in ranges and in parallel by ``restore.py``.  Shares are opened
by ``share_recipient.py`` (links and files) and ``share_to_account.py``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from livedata_cli import envfail, localfs, names
from livedata_cli.errors import LivedataError, NotFound, UsageError
from livedata_cli.index.core import Version
from livedata_cli.localfs import clean_vault_path, path_of
from livedata_cli.vault.reading import already_restored, download_to
from livedata_cli.vault.reports import BatchReport, ItemResult, Progress, noop

if TYPE_CHECKING:
    from livedata_cli.vault.core import Vault


def select_tree(
    vault: Vault, ref: str, *, version: int | None, at: float | None, latest: bool, tags: list[str]
) -> tuple[str, list[Version]] | None:
    """What a download of ``ref`` restores as a tree (prefix and entries), or
    None when ``ref`` names a single file."""
    if latest:
        return latest_set(vault, ref, tags)
    path = path_of(ref)
    if version is not None or (path and not ref.endswith("/") and vault.index.versions_of(path)):
        return None
    prefix = clean_vault_path(ref, folder=True)
    for attempt in range(2):
        entries = vault.index.as_of(prefix, at) if at is not None else vault.files_under(prefix)
        if tags:
            entries = [v for v in entries if v.kind != "dir" and set(tags) <= set(v.tags)]
        if entries or attempt:
            break
        vault.sync()
    if entries:
        return prefix, entries
    if ref.endswith("/") or not path or tags or at is not None:
        raise NotFound(f"nothing under {prefix or 'the vault root'}" + (" with those tags" if tags else ""))
    return None  # a plain name: resolve() says whether it exists


def download_tree(
    vault: Vault,
    versions: list[Version],
    prefix: str,
    root: Path,
    *,
    overwrite: bool,
    report: BatchReport,
    progress: Progress = noop,
) -> BatchReport:
    """Restore entries under ``prefix`` into ``root``: files, symlinks (never
    followed) and folders, keeping going past bad ones.  Folder modes and
    times are set last, deepest first, so a read-only folder can be filled.
    Files are fetched in ranges and in parallel (livedata_cli/vault/restore.py)."""
    from livedata_cli.vault import restore

    restore.restore_tree(vault, versions, prefix, root, overwrite=overwrite, report=report, progress=progress)
    report.duration = time.monotonic() - report.started
    return report


def latest_set(vault: Vault, prefix: str, tags: list[str]) -> tuple[str, list[Version]]:
    """The newest set under a prefix (``ci/<run>/``) having a file with all these
    tags: what ``download ci/ --latest --tag branch=main`` restores."""
    prefix = clean_vault_path(prefix, folder=True)
    groups: dict[str, list[Version]] = {}
    for v, _n in vault.index.latest(prefix):
        first, sep, _rest = v.path[len(prefix) :].partition("/")
        if sep:
            groups.setdefault(first, []).append(v)
    wanted = set(tags)
    candidates = {
        name: vs for name, vs in groups.items() if any(wanted <= set(v.tags) for v in vs)
    }
    if not candidates:
        raise NotFound(f"no set under {prefix or 'the vault'} has the tags {', '.join(tags) or '(any)'}")
    name = max(candidates, key=lambda g: max(v.created for v in candidates[g]))
    return f"{prefix}{name}/", candidates[name]




# -- what a REF names, and its download ------------------------------------------------
@dataclass(frozen=True)
class ShareLink:
    """A share file or link: opened as a stranger would, without a vault."""

    ref: str


@dataclass(frozen=True)
class Tree:
    """A folder prefix, a tree as it was (``--at``) or a set (``--latest``)."""

    prefix: str
    versions: list[Version]


@dataclass(frozen=True)
class File:
    """One version of a file: by path (newest, number or time), or by version or object id."""

    version: Version


@dataclass(frozen=True)
class Incoming:
    """A share addressed to this account: by its id, or by its link on this vault's server."""

    ref: str
    not_found: NotFound | None = None  # by id: the vault's answer, if the share cannot be opened after all


Named = ShareLink | Tree | File | Incoming


def what_is(
    ref: str,
    vault: Vault | None,
    *,
    key: str | None = None,
    version: int | None = None,
    at: float | None = None,
    latest: bool = False,
    tags: Sequence[str] = (),
    selecting: bool = False,
) -> Named | None:
    """What a download REF names, tried in this order: a share file or link
    (a link to a share addressed to this account, on this vault's server and
    without a key, is :class:`Incoming`); a folder prefix or set; a file's
    version (path or id); the id of a share addressed to this account.

    Without a vault only a share is told apart (None: the vault is needed).
    ``selecting`` (``--include``/``--exclude`` given) refuses a single file.
    NotFound when the REF names nothing."""
    from livedata_cli import share_recipient

    parsed = share_recipient.parse_ref(ref)
    if parsed is not None:
        keyless = not (parsed.key or key or os.environ.get(share_recipient.KEY_ENV))
        if parsed.kind == "api" and keyless and _vault_on(parsed.where):
            return Incoming(ref)
        return ShareLink(ref)
    if vault is None:
        return None
    selection = select_tree(vault, ref, version=version, at=at, latest=latest, tags=list(tags))
    if selection is not None:
        return Tree(*selection)
    if selecting:
        raise UsageError("--include and --exclude select files of a folder download (REF ending in '/')")
    try:
        found = vault.resolve(ref, version=version, at=at)
    except NotFound as e:
        if version is None and at is None and _incoming_id(vault, ref):
            return Incoming(ref, e)
        raise
    missing = sorted(set(tags) - set(found.tags))
    if missing:  # --tag selects a single file too: one without them is not what was asked for
        raise NotFound(f"{names.shown(found.path)} has no tag {', '.join(names.shown(t) for t in missing)}")
    return File(found)


def download_file(
    vault: Vault,
    v: Version,
    output: str | None,
    *,
    overwrite: bool,
    progress: Callable[[int], AbstractContextManager[Progress]],
) -> ItemResult:
    """Write one version to ``output`` (a file, or a folder to write into;
    None: its own name here).  Unless ``output`` names the file itself, an
    existing file is kept unless ``overwrite``, or it already holds this
    version (a rerun).  ``progress(size)`` gives the progress callback for the
    bytes written."""
    target = localfs.download_target(output, names.to_local(v.path.split("/")[-1]))
    localfs.remove_stale_temps(target.parent)
    named = output is not None and target == Path(output)  # -o FILE: the explicit choice to replace it
    if not named and not overwrite and target.exists():
        if not already_restored(vault, v, target):
            localfs.refuse_existing(target)
        return ItemResult(v.path, str(target), "unchanged", v.size, v.vid)
    envfail.register(envfail.TARGET, target.parent, target)
    with progress(v.size) as bar:
        try:
            n = download_to(vault, v, target, bar)
        except OSError as e:
            raise envfail.translate(e, needed=v.size, place=envfail.TARGET) or e from None
    return ItemResult(v.path, str(target), "downloaded", n, v.vid)


def download_files(
    vault: Vault,
    tree: Tree,
    output: str | None,
    *,
    overwrite: bool,
    include: Sequence[str],
    exclude: Sequence[str],
    report: BatchReport,
    progress: Callable[[int], AbstractContextManager[Progress]],
) -> BatchReport:
    """Restore a tree into ``output`` (None: a folder named as the prefix's
    last part, here), only the paths ``include``/``exclude`` select."""
    versions = tree.versions
    if include or exclude:
        versions = [v for v in versions if localfs.glob_selects(v.path[len(tree.prefix):], list(include), list(exclude))]
    if output == "-":
        raise UsageError("a folder cannot be written to stdout: give -o DIR")
    root = Path(output) if output else Path(tree.prefix.rstrip("/").split("/")[-1] or ".")
    envfail.register(envfail.TARGET, root)
    with progress(sum(v.size for v in versions)) as bar:
        return download_tree(vault, versions, tree.prefix, root, overwrite=overwrite, report=report, progress=bar)


def _vault_on(link: str) -> bool:
    """Whether this home's vault lives on the server of a link (``https://HOST/s/ID``)."""
    from livedata_cli import settings

    if not settings.VaultSettings.exists():
        return False
    try:
        store = settings.VaultSettings.load().store
    except LivedataError:
        return False
    return store.rstrip("/").lower() == link.rpartition("/s/")[0].rstrip("/").lower()


def _incoming_id(vault: Vault, ref: str) -> bool:
    """Whether ``ref`` is the id of a share addressed to this account (API stores)."""
    from livedata_cli.vault import share_links

    if not re.fullmatch(r"[0-9a-f]{32}", ref) or share_links.store_kind(vault.store) != "api":
        return False
    from livedata_cli.stores.api import ApiStore

    store = vault.store
    return isinstance(store, ApiStore) and ref in {str(i["id"]) for i in store.incoming_shares()}
