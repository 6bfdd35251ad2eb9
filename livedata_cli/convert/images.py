"""Images with Pillow, in a child process (``python -m livedata_cli.convert.images``).

A child process keeps a hostile image (a decompression bomb, a decoder bug)
away from the process holding the vault key, and lets a timeout stop it.
EXIF and other metadata (GPS position, camera serial) are dropped unless
asked to keep them; the EXIF orientation is applied first, so the picture
still stands the right way up.  HEIC/HEIF is read when pillow-heif is installed.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from livedata_cli.convert.base import Engine, Request, run_tool
from livedata_cli.errors import ConversionFailed

# The formats offered, by extension, when Pillow can open (inputs) or save (outputs) them.
_PILLOW_FORMATS = {
    "png": "PNG", "jpg": "JPEG", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF",
    "webp": "WEBP", "ico": "ICO", "pdf": "PDF", "heic": "HEIF", "heif": "HEIF", "avif": "AVIF",
}
_NO_ALPHA = ("JPEG", "BMP", "PDF")


class Pillow(Engine):
    name = "pillow"
    hint = "pip install 'livedata[convert]'"

    def available(self) -> bool:
        return _formats() is not None

    def version(self) -> str:
        import PIL

        return str(PIL.__version__)

    def conversions(self) -> dict[str, set[str]]:
        found = _formats()
        if found is None:
            return {}
        readable, writable = found
        return {src: set(writable) - {src} for src in readable}

    def convert(self, req: Request) -> None:
        opts = {"format": _PILLOW_FORMATS[req.dst_fmt], "quality": req.quality, "keep_metadata": req.keep_metadata}
        run_tool(
            [sys.executable, "-s", "-P", "-m", "livedata_cli.convert.images", str(req.src), str(req.dst), json.dumps(opts)],
            name="pillow",
            workdir=req.workdir,
            timeout=req.timeout,
            env=_child_env(req.workdir),
        )
        if not req.dst.exists():
            raise ConversionFailed("pillow wrote no output")
        req.progress(1.0)


def _child_env(workdir: Path) -> dict[str, str]:
    from livedata_cli.convert.base import tool_env

    env = tool_env(workdir)
    import os

    # The child must import livedata_cli from wherever this process did.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    return env


@cache
def _formats() -> tuple[list[str], list[str]] | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    _register_heif()
    Image.init()
    readable = [ext for ext, fmt in _PILLOW_FORMATS.items() if fmt in Image.OPEN]
    writable = [ext for ext, fmt in _PILLOW_FORMATS.items() if fmt in Image.SAVE and ext not in ("heic", "heif")]
    return readable, writable


def _register_heif() -> None:
    try:
        from pillow_heif import register_heif_opener  # type: ignore[import-not-found]
    except ImportError:
        return
    register_heif_opener()


# -- the child process -------------------------------------------------------------
def _convert(src: str, dst: str, opts: dict[str, Any]) -> None:
    from PIL import Image, ImageOps

    _register_heif()
    fmt = str(opts["format"])
    keep = bool(opts.get("keep_metadata"))
    with Image.open(src) as im:
        frames = getattr(im, "n_frames", 1)
        exif = im.info.get("exif") if keep else None
        icc = im.info.get("icc_profile")
        out = im if keep else ImageOps.exif_transpose(im)
        if out is None:
            out = im
        if fmt in _NO_ALPHA and out.mode not in ("RGB", "L"):
            rgba = out.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            out = flat
        kwargs: dict[str, Any] = {}
        if opts.get("quality") is not None and fmt in ("JPEG", "WEBP", "AVIF"):
            kwargs["quality"] = int(opts["quality"])
        if exif:
            kwargs["exif"] = exif
        if icc:
            kwargs["icc_profile"] = icc  # colours, not metadata about the person
        if frames > 1 and fmt in ("GIF", "WEBP", "TIFF", "PDF"):
            kwargs["save_all"] = True
        out.save(dst, format=fmt, **kwargs)


def main(argv: list[str]) -> int:
    try:
        _convert(argv[0], argv[1], json.loads(argv[2]))
    except Exception as e:  # one line for the parent's error message
        sys.stderr.write(f"{type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
