"""CloudConvert API v2: the one engine that sends plaintext off this machine.

Used only when named (``--engine cloudconvert``), with an API key in
``LIVEDATA_CLOUDCONVERT_KEY``, after the user confirmed.  One job of three
tasks, as the API documents: ``import/upload`` → ``convert`` →
``export/url``.  The file goes to the upload task's form (its ``url`` and
``parameters``, the file last), the job is polled until it is ``finished``
or ``error``, the export task's file URL is downloaded (without the API key:
it is a signed URL on another host), and the job is deleted, so the
service keeps no copy longer than it must.  The file is sent as
``input.<ext>``: the vault name does not leave either.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from livedata_cli.convert.base import Engine, Request
from livedata_cli.errors import AuthError, ConversionFailed, Refused, StoreUnreachable

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "https://api.cloudconvert.com"
KEY_VAR = "LIVEDATA_CLOUDCONVERT_KEY"
URL_VAR = "LIVEDATA_CLOUDCONVERT_URL"
POLL_FIRST, POLL_MAX = 0.5, 5.0

_DOCS = {"doc", "docx", "odt", "rtf", "txt", "md", "html", "pdf", "epub", "pages"}
_SHEETS = {"xls", "xlsx", "ods", "csv"}
_SLIDES = {"ppt", "pptx", "odp", "key"}
_IMAGES = {"png", "jpg", "gif", "bmp", "tiff", "webp", "heic", "avif", "svg"}
_AUDIO = {"mp3", "wav", "flac", "ogg", "opus", "m4a", "aac"}
_VIDEO = {"mp4", "mov", "mkv", "webm", "avi"}


def api_url() -> str:
    return os.environ.get(URL_VAR, "").strip().rstrip("/") or DEFAULT_URL


def host() -> str:
    from urllib.parse import urlsplit

    return urlsplit(api_url()).netloc or api_url()


class CloudConvert(Engine):
    name = "cloudconvert"
    local = False
    hint = f"a CloudConvert API key in {KEY_VAR}"

    def available(self) -> bool:
        return bool(os.environ.get(KEY_VAR, "").strip())

    def version(self) -> str:
        return "API v2"

    def conversions(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        groups = [
            (_DOCS | _SHEETS | _SLIDES, _DOCS | {"pdf"}),
            (_SHEETS, _SHEETS | {"pdf"}),
            (_SLIDES, _SLIDES | {"pdf", "png", "jpg"}),
            (_IMAGES | {"pdf"}, _IMAGES | {"pdf"}),
            (_AUDIO | _VIDEO, _AUDIO),
            (_VIDEO, _VIDEO | {"gif"}),
        ]
        for ins, outs in groups:
            for src in ins:
                out.setdefault(src, set()).update(outs - {src})
        return out

    def convert(self, req: Request) -> None:
        import httpx

        key = os.environ.get(KEY_VAR, "").strip()
        deadline = time.monotonic() + req.timeout
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        try:
            with httpx.Client(base_url=api_url(), headers=headers, timeout=60.0) as api:
                job = _data(api.post("/v2/jobs", json=_job(req)))
                try:
                    upload = _task(job, "import-file")
                    form = (upload.get("result") or {}).get("form") or {}
                    if not form.get("url"):
                        raise ConversionFailed("cloudconvert: the upload task has no form to upload to")
                    with open(req.src, "rb") as f, httpx.Client(timeout=None) as plain:
                        sent = plain.post(
                            str(form["url"]),
                            data={str(k): str(v) for k, v in (form.get("parameters") or {}).items()},
                            files={"file": (f"input.{req.src_fmt}", f)},
                        )
                    if sent.status_code >= 400:
                        raise ConversionFailed(f"cloudconvert: the upload was refused (HTTP {sent.status_code})")
                    req.progress(0.3)
                    job = _wait(api, str(job["id"]), deadline, req)
                    files = (_task(job, "export-file").get("result") or {}).get("files") or []
                    if not files or not files[0].get("url"):
                        raise ConversionFailed("cloudconvert: the job finished without a file to download")
                    _download(str(files[0]["url"]), req, deadline)
                finally:
                    with contextlib.suppress(httpx.HTTPError):
                        api.delete(f"/v2/jobs/{job['id']}")  # their copy, gone now
        except httpx.TimeoutException:
            raise ConversionFailed(f"cloudconvert took longer than {req.timeout:g} s (--timeout)") from None
        except httpx.HTTPError as e:
            raise StoreUnreachable(f"cloudconvert cannot be reached at {api_url()}: {e}") from None
        req.progress(1.0)


def _job(req: Request) -> dict[str, Any]:
    return {
        "tag": "livedata",
        "tasks": {
            "import-file": {"operation": "import/upload"},
            "convert-file": {
                "operation": "convert",
                "input": "import-file",
                "input_format": req.src_fmt,
                "output_format": req.dst_fmt,
            },
            "export-file": {"operation": "export/url", "input": "convert-file"},
        },
    }


def _data(r: httpx.Response) -> dict[str, Any]:
    """The ``data`` of an API answer, or the error it stands for."""
    if r.status_code in (401, 403):
        raise AuthError(f"cloudconvert refused the API key in {KEY_VAR} (HTTP {r.status_code})")
    if r.status_code in (402, 429):
        raise Refused(f"cloudconvert refused the job: {_message(r)} (HTTP {r.status_code})")
    if r.status_code >= 400:
        raise ConversionFailed(f"cloudconvert: {_message(r)} (HTTP {r.status_code})")
    try:
        data = r.json()["data"]
    except (ValueError, KeyError, TypeError):
        raise ConversionFailed("cloudconvert answered something that is not an API v2 document") from None
    if not isinstance(data, dict):
        raise ConversionFailed("cloudconvert answered something that is not an API v2 document")
    return data


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
        return str(body.get("message") or body.get("code") or r.reason_phrase)
    except ValueError:
        return str(r.reason_phrase)


def _task(job: dict[str, Any], name: str) -> dict[str, Any]:
    for task in job.get("tasks") or []:
        if task.get("name") == name:
            return dict(task)
    raise ConversionFailed(f"cloudconvert: the job has no task {name!r}")


def _wait(api: httpx.Client, job_id: str, deadline: float, req: Request) -> dict[str, Any]:
    delay = POLL_FIRST
    while True:
        job = _data(api.get(f"/v2/jobs/{job_id}"))
        status = job.get("status")
        if status == "finished":
            return job
        if status == "error":
            failed = [t for t in job.get("tasks") or [] if t.get("status") == "error"]
            why = "; ".join(f"{t.get('name')}: {t.get('code') or ''} {t.get('message') or ''}".strip() for t in failed)
            raise ConversionFailed(f"cloudconvert failed: {why or 'the job ended in error'}")
        convert = next((t for t in job.get("tasks") or [] if t.get("name") == "convert-file"), None)
        if convert and isinstance(convert.get("percent"), int | float):
            req.progress(0.3 + 0.6 * float(convert["percent"]) / 100)
        if time.monotonic() + delay > deadline:
            raise ConversionFailed(f"cloudconvert took longer than {req.timeout:g} s (--timeout)")
        time.sleep(delay)
        delay = min(POLL_MAX, delay * 2)


def _download(url: str, req: Request, deadline: float) -> None:
    import httpx

    with httpx.Client(timeout=max(1.0, deadline - time.monotonic()), follow_redirects=True) as plain, plain.stream(
        "GET", url
    ) as r:
        if r.status_code >= 400:
            raise ConversionFailed(f"cloudconvert: the result could not be downloaded (HTTP {r.status_code})")
        with open(req.dst, "wb") as out:
            for chunk in r.iter_bytes(1 << 20):
                out.write(chunk)
