"""livedata convert: real engines (Pillow, pandoc, LibreOffice, ffmpeg) on samples made
here, results checked by content; the queue and its workers; CloudConvert against a
local stand-in that speaks its API v2 (tests/cloudconvert_stub.py)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from cloudconvert_stub import CloudConvertStub

from conftest import Cli, assert_one_line_error, write

pytestmark = pytest.mark.subprocess


@pytest.fixture
def conv(vault_cli: Cli, tmp_path: Path) -> Cli:
    """A vault CLI whose temporary files go to a folder of this test, so leftovers show."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    vault_cli.env["TMPDIR"] = str(tmp)
    return vault_cli


def _leftovers(cli: Cli) -> list[str]:
    return sorted(p.name for p in Path(cli.env["TMPDIR"]).iterdir())


def _info(cli: Cli, ref: str) -> dict[str, Any]:
    return cli.ok("info", ref, "--json").json()  # type: ignore[no-any-return]


def _download(cli: Cli, ref: str) -> bytes:
    return cli.ok("download", ref, "-o", "-").stdout


def _png(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (width, height), (*colour, 255)).save(out, "PNG")
    return out.getvalue()


def _ffprobe(data: bytes, tmp: Path) -> dict[str, Any]:
    path = tmp / "probe.bin"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, check=True, text=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def _command_lines() -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return out


def _make_video(path: Path, seconds: int, size: str = "320x240") -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )
    return path


# -- what is installed ------------------------------------------------------------------
def test_formats_come_from_what_is_installed(conv: Cli) -> None:
    doc = conv.ok("convert", "formats", "--json").json()
    engines = {e["engine"]: e for e in doc["engines"]}
    assert {"pillow", "pandoc", "libreoffice", "ffmpeg"} <= set(engines)
    assert "pdf" in engines["libreoffice"]["conversions"]["docx"]
    assert "docx" in engines["pandoc"]["conversions"]["md"]
    assert "mp3" in engines["ffmpeg"]["conversions"]["wav"]
    assert "jpg" in engines["pillow"]["conversions"]["png"]
    assert [m["engine"] for m in doc["missing"]] == ["cloudconvert"]  # no key: not offered
    with_key = conv.ok("convert", "formats", "--json", env={"LIVEDATA_CLOUDCONVERT_KEY": "k"}).json()
    remote = next(e for e in with_key["engines"] if e["engine"] == "cloudconvert")
    assert remote["local"] is False
    human = conv.ok("convert", "formats")
    assert "libreoffice" in human.out and "not found: cloudconvert" in human.stderr


# -- documents: pandoc and LibreOffice ------------------------------------------------------
def test_markdown_to_docx_to_pdf_checked_by_content(conv: Cli) -> None:
    write(conv.cwd / "notes" / "plan.md", "# Plan\n\nQuarterly report for the llama farm.\n")
    conv.ok("upload", "notes", "--recursive", "--tag", "work")
    source = _info(conv, "notes/plan.md")

    r = conv.ok("convert", "notes/plan.md", "--to", "docx", "-o", "plan.docx", "--json")
    item = r.json()["items"][0]
    assert (item["status"], item["engine"], item["path"]) == ("converted", "pandoc", "notes/plan.docx")
    with zipfile.ZipFile(conv.cwd / "plan.docx") as z:
        assert "llama farm" in z.read("word/document.xml").decode()
    with zipfile.ZipFile(io.BytesIO(_download(conv, "notes/plan.docx"))) as z:
        assert "llama farm" in z.read("word/document.xml").decode()
    docx = _info(conv, "notes/plan.docx")
    assert docx["derived_from"] == source["id"] and docx["tags"] == ["work"]

    r = conv.ok("convert", "notes/plan.docx", "--to", "pdf", "--json")  # LibreOffice, once per run
    assert r.json()["items"][0]["engine"] == "libreoffice"
    from pypdf import PdfReader

    text = PdfReader(io.BytesIO(_download(conv, "notes/plan.pdf"))).pages[0].extract_text()
    assert "llama farm" in text
    pdf = _info(conv, "notes/plan.pdf")
    assert pdf["derived_from"] == docx["id"] and pdf["mime"] == "application/pdf"
    assert "converted from: notes/plan.docx version 1" in conv.ok("info", "notes/plan.pdf").out

    # --no-store: only written locally; the source is untouched throughout.
    conv.ok("convert", "notes/plan.md", "--to", "html", "--no-store", "-o", "out/")
    assert "llama farm" in (conv.cwd / "out" / "plan.html").read_text()
    assert "notes/plan.html" not in conv.ok("ls").out
    after = _info(conv, "notes/plan.md")
    assert (after["id"], after["hash"], len(after["versions"])) == (source["id"], source["hash"], 1)
    assert _leftovers(conv) == []


def test_pandoc_sandbox_keeps_local_files_out_of_the_result(conv: Cli, tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.png", _png(4, 4))
    write(conv.cwd / "evil.md", f"# Hi\n\n![stolen]({secret})\n\nbody text\n")
    conv.ok("upload", "evil.md")
    conv.ok("convert", "evil.md", "--to", "docx")
    with zipfile.ZipFile(io.BytesIO(_download(conv, "evil.docx"))) as z:
        assert not [n for n in z.namelist() if n.startswith("word/media/")]
        assert "body text" in z.read("word/document.xml").decode()


# -- images: Pillow ---------------------------------------------------------------------------
def test_images_by_glob_with_quality_and_jobs(conv: Cli) -> None:
    from PIL import Image

    write(conv.cwd / "photos" / "a.png", _png(64, 48))
    write(conv.cwd / "photos" / "b.png", _png(30, 20, (0, 0, 255)))
    write(conv.cwd / "photos" / "deeper" / "c.png", _png(8, 8))
    conv.ok("upload", "photos", "--recursive", "--tag", "holiday")
    r = conv.ok("convert", "photos/*.png", "--to", "jpg", "--quality", "85", "--jobs", "2", "--json")
    assert r.json()["counts"] == {"converted": 2}  # '*' stays in its folder
    for name, size in (("a", (64, 48)), ("b", (30, 20))):
        with Image.open(io.BytesIO(_download(conv, f"photos/{name}.jpg"))) as im:
            assert (im.format, im.size, im.mode) == ("JPEG", size, "RGB")
        assert _info(conv, f"photos/{name}.jpg")["tags"] == ["holiday"]


def test_exif_is_stripped_unless_kept(conv: Cli) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0112] = 6  # Orientation: rotated 90°, so the stripped copy is turned upright
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (10, 200, 10)).save(out, "JPEG", exif=exif)
    write(conv.cwd / "cam.jpg", out.getvalue())
    conv.ok("upload", "cam.jpg")
    conv.ok("convert", "cam.jpg", "--to", "webp")
    conv.ok("convert", "cam.jpg", "--to", "png", "--keep-metadata")
    with Image.open(io.BytesIO(_download(conv, "cam.webp"))) as im:
        assert im.format == "WEBP" and not im.getexif() and im.size == (20, 40)
    with Image.open(io.BytesIO(_download(conv, "cam.png"))) as im:
        assert im.getexif().get(0x010F) == "SpyCam" and im.size == (40, 20)


# -- audio and video: ffmpeg ----------------------------------------------------------------------
def test_audio_and_video_checked_with_ffprobe(conv: Cli, tmp_path: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
         str(conv.cwd / "tone.wav")],
        check=True,
    )
    _make_video(conv.cwd / "clip.mov", 1, "160x120")
    conv.ok("upload", "tone.wav", "clip.mov")
    conv.ok("convert", "tone.wav", "--to", "mp3")
    conv.ok("convert", "clip.mov", "--to", "mp4", "--as", "videos/clip.mp4")
    mp3 = _ffprobe(_download(conv, "tone.mp3"), tmp_path)
    assert mp3["streams"][0]["codec_name"] == "mp3" and 0.9 < float(mp3["format"]["duration"]) < 1.2
    mp4 = _ffprobe(_download(conv, "videos/clip.mp4"), tmp_path)
    video = next(s for s in mp4["streams"] if s["codec_type"] == "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 160, 120)
    assert "mp4" in mp4["format"]["format_name"]


# -- failures ---------------------------------------------------------------------------------------
def test_a_hanging_engine_is_stopped_and_nothing_is_left(conv: Cli) -> None:
    _make_video(conv.cwd / "long.mp4", 20)
    conv.ok("upload", "long.mp4")
    before = _info(conv, "long.mp4")
    r = conv("convert", "long.mp4", "--to", "webm", "--timeout", "1")  # VP9 takes seconds here
    assert_one_line_error(r, 1)
    assert "ffmpeg took longer than 1 s and was stopped" in r.stderr
    assert _leftovers(conv) == []
    assert "long.webm" not in conv.ok("ls").out
    assert not [c for c in _command_lines() if conv.env["TMPDIR"] in c]  # the engine died with its folder
    assert _info(conv, "long.mp4")["id"] == before["id"]


def test_engine_failure_is_one_line_and_the_source_untouched(conv: Cli) -> None:
    write(conv.cwd / "broken.png", b"\x89PNG\r\n\x1a\nnot really")
    write(conv.cwd / "broken.docx", b"PK\x03\x04 not a zip at all")
    conv.ok("upload", "broken.png", "broken.docx")
    r = conv("convert", "broken.png", "--to", "jpg")
    assert_one_line_error(r, 1)
    assert "pillow failed" in r.stderr and "broken.png" in r.stderr
    r = conv("convert", "broken.docx", "--to", "md")
    assert_one_line_error(r, 1)
    assert "pandoc failed" in r.stderr
    assert conv.ok("ls").out.split() == ["broken.docx", "broken.png"]
    assert _download(conv, "broken.png") == b"\x89PNG\r\n\x1a\nnot really"
    assert _leftovers(conv) == []


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["a.png", "--to", "xyz"], 2, "no engine on this machine converts png to xyz"),
        (["missing.png", "--to", "jpg"], 3, "no such file"),
        (["nothing/*.png", "--to", "jpg"], 3, "no file in the vault matches"),
        (["a.png", "--to", "jpg", "--no-store"], 2, "--no-store needs -o"),
        (["a.png", "--to", "png"], 2, "replace its own source"),
        (["a.png", "--to", "jpg", "--engine", "nope"], 2, "unknown engine"),
        (["a.png", "--to", "jpg", "--engine", "cloudconvert"], 2, "LIVEDATA_CLOUDCONVERT_KEY"),
        (["a.png", "--to", "jpg", "--as", "a.png"], 2, "replace its own source"),
    ],
)
def test_bad_requests(conv: Cli, args: list[str], code: int, words: str) -> None:
    write(conv.cwd / "a.png", _png(4, 4))
    conv.ok("upload", "a.png")
    r = conv("convert", *args)
    assert_one_line_error(r, code)
    assert words in r.stderr
    assert conv.ok("ls").out.split() == ["a.png"]


# -- the queue ------------------------------------------------------------------------------------------
def test_queued_jobs_worker_and_status(conv: Cli) -> None:
    write(conv.cwd / "a.png", _png(12, 10))
    write(conv.cwd / "bad.png", b"garbage")
    conv.ok("upload", "a.png", "bad.png")
    job = conv.ok("convert", "a.png", "--to", "gif", "--no-wait").out.strip()
    bad = conv.ok("convert", "bad.png", "--to", "gif", "--no-wait", "--json").json()["items"][0]["job"]
    assert conv.ok("convert", "status", job, "--json").json()["status"] == "queued"
    assert "a.gif" not in conv.ok("ls").out

    r = conv.ok("convert", "worker", "--once", "--json")
    assert (r.json()["done"], r.json()["failed"]) == (1, 1)
    done = conv.ok("convert", "status", job, "--json").json()
    assert (done["status"], done["path"], done["attempts"]) == ("done", "a.gif", 1)
    assert done["result_id"] == _info(conv, "a.gif")["id"]
    failed = conv.ok("convert", "status", bad[:6], "--json").json()
    assert failed["status"] == "failed" and "pillow failed" in failed["error"]
    listing = conv.ok("convert", "status").out
    assert "done" in listing and "failed" in listing and "a.png -> a.gif" in listing
    assert_one_line_error(conv("convert", "status", "ffffffffffff"), 3)
    events = conv.ok("audit", "--action", "convert", "--json").json()
    assert any(e["path"] == "a.gif" and e["result"] == "ok" for e in events)


def test_a_worker_killed_mid_job_is_retried_once_by_another(conv: Cli) -> None:
    _make_video(conv.cwd / "long.mp4", 12)
    conv.ok("upload", "long.mp4")
    job = conv.ok("convert", "long.mp4", "--to", "webm", "--no-wait").out.strip()
    first = conv.popen("convert", "worker", "--lease", "2", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if conv.ok("convert", "status", job, "--json").json()["status"] == "running":
                break
            time.sleep(0.1)
        time.sleep(0.5)  # the engine is at work
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    stalled = conv.ok("convert", "status", job, "--json").json()
    assert stalled["status"] == "running" and stalled["attempts"] == 1
    assert conv.ok("convert", "worker", "--once", "--json").json()["done"] == 0  # the lease still holds
    time.sleep(2.5)
    assert "its worker stopped" in conv.ok("convert", "status", job).out
    r = conv.ok("convert", "worker", "--once", "--lease", "30", "--json")
    assert r.json()["done"] == 1
    done = conv.ok("convert", "status", job, "--json").json()
    assert (done["status"], done["attempts"]) == ("done", 2)
    webm = _ffprobe(_download(conv, "long.webm"), Path(conv.env["TMPDIR"]))
    assert any(s["codec_name"] == "vp9" for s in webm["streams"])
    time.sleep(0.2)
    conv.ok("convert", "formats")  # any later run sweeps the killed worker's folder
    assert [n for n in _leftovers(conv) if n.startswith("livedata-convert-")] == []


# -- CloudConvert ------------------------------------------------------------------------------------------
def test_cloudconvert_job_api_v2(conv: Cli) -> None:
    from PIL import Image

    write(conv.cwd / "private-name.png", _png(33, 17))
    write(conv.cwd / "notes.md", "# x\n")
    conv.ok("upload", "private-name.png", "notes.md")
    with CloudConvertStub("test-key") as stub:
        env = {"LIVEDATA_CLOUDCONVERT_KEY": "test-key", "LIVEDATA_CLOUDCONVERT_URL": stub.url}
        r = conv("convert", "private-name.png", "--to", "jpg", "--engine", "cloudconvert", env=env)
        assert_one_line_error(r, 2)  # no terminal to confirm on, and no --yes
        assert "plaintext leaves this machine" in r.stderr and "--yes" in r.stderr
        assert stub.requests == []

        r = conv.ok("convert", "private-name.png", "--to", "jpg", "--engine", "cloudconvert", "--yes", env=env)
        assert "warning" in r.stderr
        with Image.open(io.BytesIO(_download(conv, "private-name.jpg"))) as im:
            assert (im.format, im.size) == ("JPEG", (33, 17))
        create = stub.requests[0]
        assert (create.method, create.path, create.authorization) == ("POST", "/v2/jobs", "Bearer test-key")
        ops = [t["operation"] for t in json.loads(create.body)["tasks"].values()]
        assert ops == ["import/upload", "convert", "export/url"]
        upload = next(s for s in stub.requests if s.path.startswith("/upload/"))
        assert upload.authorization is None and upload.form["file"][0] == "input.png"
        assert "private-name" not in b"".join(s.body for s in stub.requests if not s.path.startswith("/upload/")).decode()
        download = next(s for s in stub.requests if s.path.startswith("/files/"))
        assert download.authorization is None  # a signed URL: the key stays with the API
        assert stub.deleted == list(stub.jobs)  # their copy is deleted

        r = conv("convert", "notes.md", "--to", "pdf", "--engine", "cloudconvert", "--yes", env=env)
        assert_one_line_error(r, 1)
        assert "INVALID_CONVERSION_TYPE" in r.stderr
        r = conv("convert", "private-name.png", "--to", "webp", "--engine", "cloudconvert", "--yes",
                 env={**env, "LIVEDATA_CLOUDCONVERT_KEY": "wrong"})
        assert_one_line_error(r, 4)
    assert _leftovers(conv) == []
    assert os.listdir(conv.env["TMPDIR"]) == []
