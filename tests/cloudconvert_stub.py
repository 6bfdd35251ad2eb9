"""A local stand-in for the CloudConvert API v2, for tests (the service is paid and offline here).

It speaks the job API as documented: ``POST /v2/jobs`` with named tasks
(``import/upload`` → ``convert`` → ``export/url``) answers ``201`` with
``{"data": job}``, the upload task carrying ``result.form`` (``url`` and
``parameters``); a multipart ``POST`` to that form (parameters, then
``file``) answers ``201``; ``GET /v2/jobs/{id}`` shows the job
``processing`` once, then ``finished`` (or ``error`` with the failed task's
``code`` and ``message``), the export task carrying ``result.files`` with a
signed ``url``; ``DELETE /v2/jobs/{id}`` answers ``204``.  Conversions are
real where Pillow can do them (images); any other pair fails as the service
fails an unsupported one.  Every request is recorded for the tests to check.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF"}


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    body: bytes = b""
    form: dict[str, Any] = field(default_factory=dict)


class CloudConvertStub:
    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.jobs: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self.requests: list[Seen] = []
        self.deleted: list[str] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                stub._handle(self, "POST")

            def do_GET(self) -> None:
                stub._handle(self, "GET")

            def do_DELETE(self) -> None:
                stub._handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CloudConvertStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- plumbing ------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        seen = Seen(method, h.path, h.headers.get("Authorization"), body)
        with self._lock:
            self.requests.append(seen)
        parts = h.path.strip("/").split("/")
        if parts[:1] == ["upload"] and method == "POST":
            return self._upload(h, parts[1], seen)
        if parts[:1] == ["files"] and method == "GET":
            data = self.files.get(parts[1])
            return self._send(h, 404, {"message": "no such file"}) if data is None else self._raw(h, data)
        if parts[:2] != ["v2", "jobs"]:
            return self._send(h, 404, {"message": "not found", "code": "NOT_FOUND"})
        if h.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._send(h, 401, {"message": "Unauthenticated.", "code": "UNAUTHENTICATED"})
        if method == "POST" and len(parts) == 2:
            return self._create(h, json.loads(body))
        job = self.jobs.get(parts[2]) if len(parts) > 2 else None
        if job is None:
            return self._send(h, 404, {"message": "job not found", "code": "NOT_FOUND"})
        if method == "DELETE":
            self.deleted.append(job["id"])
            h.send_response(204)
            h.end_headers()
            return None
        self._advance(job)
        return self._send(h, 200, {"data": self._public(job)})

    def _send(self, h: BaseHTTPRequestHandler, code: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _raw(self, h: BaseHTTPRequestHandler, data: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    # -- the API ---------------------------------------------------------------------
    def _create(self, h: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        job_id = secrets.token_hex(8)
        tasks = []
        for name, spec in (payload.get("tasks") or {}).items():
            task: dict[str, Any] = {
                "id": secrets.token_hex(8), "name": name, "job_id": job_id, "status": "waiting",
                "operation": spec.get("operation"), "code": None, "message": None, "percent": 0,
                "result": None, "depends_on_task_ids": [], "_spec": spec,
            }
            if spec.get("operation") == "import/upload":
                task["result"] = {
                    "form": {
                        "url": f"{self.url}/upload/{task['id']}",
                        "parameters": {"expires": "1893456000", "signature": secrets.token_hex(16)},
                    }
                }
            tasks.append(task)
        job = {"id": job_id, "tag": payload.get("tag"), "status": "waiting", "tasks": tasks, "_polls": 0}
        self.jobs[job_id] = job
        self._send(h, 201, {"data": self._public(job)})

    def _upload(self, h: BaseHTTPRequestHandler, task_id: str, seen: Seen) -> None:
        raw = b"Content-Type: " + h.headers["Content-Type"].encode() + b"\r\n\r\n" + seen.body
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            seen.form[str(name)] = (part.get_filename(), part.get_payload(decode=True))
        task = next((t for j in self.jobs.values() for t in j["tasks"] if t["id"] == task_id), None)
        if task is None or "file" not in seen.form or "signature" not in seen.form:
            return self._send(h, 400, {"message": "bad upload"})
        task["status"], task["_data"] = "finished", seen.form["file"][1]
        task["result"] = {"files": [{"filename": seen.form["file"][0]}]}
        h.send_response(201)
        h.send_header("Content-Length", "0")
        h.end_headers()
        return None

    def _advance(self, job: dict[str, Any]) -> None:
        """The first look finds the job processing; the next, finished (or failed)."""
        job["_polls"] += 1
        upload = next(t for t in job["tasks"] if t["operation"] == "import/upload")
        if upload["status"] != "finished" or job["status"] in ("finished", "error"):
            return
        if job["_polls"] == 1:
            job["status"] = "processing"
            for t in job["tasks"]:
                if t["operation"] == "convert":
                    t["status"], t["percent"] = "processing", 50
            return
        convert = next(t for t in job["tasks"] if t["operation"] == "convert")
        export = next(t for t in job["tasks"] if t["operation"] == "export/url")
        spec = convert["_spec"]
        fmt = IMAGE_FORMATS.get(spec.get("output_format", ""))
        if spec.get("input_format") not in IMAGE_FORMATS or fmt is None:
            convert.update(status="error", code="INVALID_CONVERSION_TYPE",
                           message=f"This conversion type is not supported ({spec.get('input_format')} to {spec.get('output_format')})")
            export.update(status="error", code="INPUT_TASK_FAILED", message="Input task has failed")
            job["status"] = "error"
            return
        from PIL import Image

        out = io.BytesIO()
        with Image.open(io.BytesIO(upload["_data"])) as im:
            (im.convert("RGB") if fmt == "JPEG" else im).save(out, format=fmt)
        file_id = secrets.token_hex(8)
        self.files[file_id] = out.getvalue()
        name = f"output.{spec['output_format']}"
        convert.update(status="finished", percent=100, result={"files": [{"filename": name}]})
        export.update(status="finished", percent=100, result={
            "files": [{"filename": name, "size": len(out.getvalue()), "url": f"{self.url}/files/{file_id}/{name}"}]
        })
        job["status"] = "finished"

    def _public(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")} | {
            "tasks": [{k: v for k, v in t.items() if not k.startswith("_")} for t in job["tasks"]]
        }
