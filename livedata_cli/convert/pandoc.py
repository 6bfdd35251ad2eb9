"""Markup and documents with pandoc, always with ``--sandbox``.

The sandbox stops a document from pulling other files of this machine (or
URLs) into its output, through an image reference or an include.  Some pandoc
builds (Debian's 2.17, pandoc issue #8128) cannot read their own data files
in the sandbox, which breaks the DOCX, PPTX and EPUB writers.  For those the
reader still runs sandboxed, into pandoc's JSON tree; every image that is not
embedded (``data:``) is replaced by its description, as the sandbox would; and
only then does the writer run, with nothing left in the tree to fetch.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from typing import Any

from livedata_cli.convert.base import Engine, Request, run_tool
from livedata_cli.errors import ConversionFailed

# livedata's format (extension) -> pandoc's reader / writer name.
_READERS = {
    "md": "markdown", "txt": "markdown", "html": "html", "docx": "docx", "odt": "odt",
    "rst": "rst", "org": "org", "tex": "latex", "epub": "epub", "rtf": "rtf", "ipynb": "ipynb",
    "csv": "csv", "textile": "textile", "mediawiki": "mediawiki", "fb2": "fb2", "opml": "opml",
}
_WRITERS = {
    "md": "markdown", "txt": "plain", "html": "html", "docx": "docx", "odt": "odt", "rst": "rst",
    "org": "org", "tex": "latex", "epub": "epub", "rtf": "rtf", "ipynb": "ipynb", "pptx": "pptx",
    "textile": "textile", "mediawiki": "mediawiki", "fb2": "fb2", "opml": "opml",
}
_STANDALONE = ("html", "tex", "rtf", "epub", "docx", "odt", "pptx", "fb2", "opml")


class Pandoc(Engine):
    name = "pandoc"
    hint = "apt install pandoc"

    def available(self) -> bool:
        return shutil.which("pandoc") is not None and _lists() is not None

    def version(self) -> str:
        found = _lists()
        return found[2] if found else ""

    def conversions(self) -> dict[str, set[str]]:
        found = _lists()
        if found is None:
            return {}
        readers, writers, _ = found
        ins = [ext for ext, r in _READERS.items() if r in readers]
        outs = {ext for ext, w in _WRITERS.items() if w in writers}
        return {src: outs - {src} for src in ins}

    def convert(self, req: Request) -> None:
        reader, writer = _READERS[req.src_fmt], _WRITERS[req.dst_fmt]
        extra = ["--standalone"] if req.dst_fmt in _STANDALONE else []
        if req.dst_fmt == "html":
            extra += ["--metadata", f"pagetitle={req.title or req.dst.stem}"]
        base = [_exe(), "--sandbox", "--from", reader]
        try:
            run_tool(
                [*base, "--to", writer, *extra, "--output", str(req.dst), str(req.src)],
                name="pandoc", workdir=req.workdir, timeout=req.timeout,
            )
        except ConversionFailed as e:
            if "Could not find data file" not in e.message:
                raise
            self._two_phase(req, base, writer, extra)
        if not req.dst.exists():
            raise ConversionFailed("pandoc wrote no output")
        req.progress(1.0)

    def _two_phase(self, req: Request, base: list[str], writer: str, extra: list[str]) -> None:
        tree_path = req.workdir / f"{req.dst.stem}.pandoc.json"
        run_tool(
            [*base, "--to", "json", "--output", str(tree_path), str(req.src)],
            name="pandoc", workdir=req.workdir, timeout=req.timeout,
        )
        tree = json.loads(tree_path.read_text(encoding="utf-8"))
        tree_path.write_text(json.dumps(_unlink_images(tree)), encoding="utf-8")
        run_tool(
            [_exe(), "--from", "json", "--to", writer, *extra, "--output", str(req.dst), str(tree_path)],
            name="pandoc", workdir=req.workdir, timeout=req.timeout,
        )


def _unlink_images(node: Any) -> Any:
    """The tree with every non-embedded image replaced by its description."""
    if isinstance(node, list):
        return [_unlink_images(n) for n in node]
    if isinstance(node, dict):
        if node.get("t") == "Image":
            attr, alt, target = node["c"]
            if not str(target[0]).startswith("data:"):
                return {"t": "Span", "c": [attr, _unlink_images(alt)]}
        return {k: _unlink_images(v) for k, v in node.items()}
    return node


def _exe() -> str:
    return shutil.which("pandoc") or "pandoc"


@cache
def _lists() -> tuple[set[str], set[str], str] | None:
    import subprocess

    try:
        ins = subprocess.run([_exe(), "--list-input-formats"], capture_output=True, text=True, timeout=30)
        outs = subprocess.run([_exe(), "--list-output-formats"], capture_output=True, text=True, timeout=30)
        ver = subprocess.run([_exe(), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if ins.returncode or outs.returncode:
        return None
    first = ver.stdout.splitlines()[0] if ver.stdout else ""
    return set(ins.stdout.split()), set(outs.stdout.split()), first.removeprefix("pandoc ").strip()
