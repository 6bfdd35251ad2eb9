"""Audio and video with ffmpeg (``-nostdin``, progress read from ``-progress``).

The outputs offered are those whose encoders this ffmpeg build has; a video
converts to audio too (the sound track), never the other way round.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache

from livedata_cli.convert.base import Engine, Request, run_tool
from livedata_cli.errors import ConversionFailed

AUDIO_IN = {"wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "wma", "aiff"}
VIDEO_IN = {"mp4", "mov", "mkv", "webm", "avi", "m4v", "mpg", "wmv", "3gp"}
# output format -> (encoders it needs, ffmpeg arguments)
AUDIO_OUT: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "mp3": (("libmp3lame",), ["-vn", "-c:a", "libmp3lame", "-q:a", "2"]),
    "ogg": (("libvorbis",), ["-vn", "-c:a", "libvorbis"]),
    "opus": (("libopus",), ["-vn", "-c:a", "libopus"]),
    "flac": (("flac",), ["-vn", "-c:a", "flac"]),
    "wav": (("pcm_s16le",), ["-vn", "-c:a", "pcm_s16le"]),
    "m4a": (("aac",), ["-vn", "-c:a", "aac"]),
}
VIDEO_OUT: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "mp4": (("libx264", "aac"), ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart"]),
    "mov": (("libx264", "aac"), ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"]),
    "mkv": (("libx264", "aac"), ["-c:v", "libx264", "-c:a", "aac"]),
    "webm": (("libvpx-vp9", "libopus"), ["-c:v", "libvpx-vp9", "-c:a", "libopus"]),
    "gif": (("gif",), ["-an", "-vf", "fps=10"]),
}


class Ffmpeg(Engine):
    name = "ffmpeg"
    hint = "apt install ffmpeg"

    def available(self) -> bool:
        return shutil.which("ffmpeg") is not None and _encoders() is not None

    def version(self) -> str:
        found = _encoders()
        return found[1] if found else ""

    def conversions(self) -> dict[str, set[str]]:
        found = _encoders()
        if found is None:
            return {}
        have = found[0]
        audio = {fmt for fmt, (need, _) in AUDIO_OUT.items() if all(n in have for n in need)}
        video = {fmt for fmt, (need, _) in VIDEO_OUT.items() if all(n in have for n in need)}
        out = {src: audio - {src} for src in AUDIO_IN}
        out.update({src: (audio | video) - {src} for src in VIDEO_IN})
        return out

    def convert(self, req: Request) -> None:
        args = (AUDIO_OUT.get(req.dst_fmt) or VIDEO_OUT[req.dst_fmt])[1]
        duration = _duration(req)

        def on_line(line: str) -> None:
            key, _, value = line.partition("=")
            if key == "out_time_us" and duration and value.strip().lstrip("-").isdigit():
                req.progress(max(0.0, min(1.0, int(value) / 1e6 / duration)))

        run_tool(
            [
                _exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
                "-y", "-i", str(req.src), *args, "-f", _muxer(req.dst_fmt), str(req.dst),
            ],
            name="ffmpeg", workdir=req.workdir, timeout=req.timeout, on_line=on_line,
        )
        if not req.dst.exists() or req.dst.stat().st_size == 0:
            raise ConversionFailed("ffmpeg wrote no output")
        req.progress(1.0)


def _muxer(fmt: str) -> str:
    return {"mkv": "matroska", "m4a": "ipod", "opus": "opus", "ogg": "ogg"}.get(fmt, fmt)


def _exe() -> str:
    return shutil.which("ffmpeg") or "ffmpeg"


def _duration(req: Request) -> float | None:
    probe = shutil.which("ffprobe")
    if probe is None:
        return None
    try:
        out = run_tool(
            [probe, "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(req.src)],
            name="ffprobe", workdir=req.workdir, timeout=min(req.timeout, 60),
        )
        return float(out.strip()) or None
    except (ConversionFailed, ValueError):
        return None


@cache
def _encoders() -> tuple[set[str], str] | None:
    try:
        r = subprocess.run([_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
        v = subprocess.run([_exe(), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode:
        return None
    names = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    words = v.stdout.split()
    return names, words[2] if len(words) > 2 else ""
