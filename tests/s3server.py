"""A real S3-protocol server for the S3 and KMS tests: moto's server mode on
127.0.0.1, reached over HTTP by boto3 exactly as AWS would be (no in-process
patching).  One server per test process; each test gets its own bucket.

``CountingProxy`` sits between livedata and the server when a test must count
or hold requests (KMS Decrypt calls, UploadPart calls): a plain HTTP relay.
"""

from __future__ import annotations

import collections
import http.client
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import Cli

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MIB = 1024 * 1024
PART = 5 * MIB  # the smallest part S3 allows; tests use it to get several parts from little data


def boto(service: str, url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        ),
    )


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_url: str) -> Any:
    return boto("s3", moto_url)


@pytest.fixture
def kms(moto_url: str) -> Any:
    return boto("kms", moto_url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"ld-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def kms_key(kms: Any) -> tuple[str, str]:
    """A fresh KMS key: (key id, alias name)."""
    key = kms.create_key(Description="livedata test")["KeyMetadata"]["KeyId"]
    alias = f"alias/ld-{uuid.uuid4().hex[:12]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key)
    return key, alias


def aws_env(cli: Cli, endpoint: str) -> Cli:
    """Point a test's CLI at an endpoint, with test credentials and 5 MiB parts."""
    for k in [k for k in cli.env if k.startswith("AWS_")]:
        del cli.env[k]
    cli.env.update(AWS_ENV)
    cli.env["AWS_ENDPOINT_URL"] = endpoint
    cli.env["LIVEDATA_S3_PART_SIZE"] = str(PART)
    return cli


@pytest.fixture
def s3_cli(cli: Cli, moto_url: str) -> Cli:
    return aws_env(cli, moto_url)


def all_keys(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


# -- a counting, holding relay ------------------------------------------------------
def operation(method: str, path: str, headers: Any) -> str:
    """A request's operation name: "kms:Decrypt", "s3:UploadPart", ... (enough for the tests)."""
    target = headers.get("X-Amz-Target", "")
    if target:
        return "kms:" + target.rpartition(".")[2]
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    if method == "PUT" and "partNumber" in query:
        return "s3:UploadPart"
    if method == "POST" and "uploads" in query:
        return "s3:CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "s3:CompleteMultipartUpload"
    if method == "GET" and "uploadId" in query:
        return "s3:ListParts"
    if method == "GET" and "uploads" in query:
        return "s3:ListMultipartUploads"
    return f"s3:{method}"


class CountingProxy:
    """Relays HTTP requests to ``upstream``, counting them by operation.

    ``hold(op, after=n)`` lets ``n`` requests of ``op`` through and keeps the
    next ones waiting (until ``close``), as a stalled network would.  Operations
    in ``unsupported`` are answered ``501 NotImplemented``, as by an
    S3-compatible server that lacks them.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._hold: dict[str, int] = {}
        self._released = threading.Event()
        self.parts: list[tuple[str, bytes]] = []  # (path, body) of every part that reached the store
        self.unsupported: set[str] = set()  # operations answered 501 NotImplemented
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the client died mid-request (a test killed it): nothing arrived
                    self.close_connection = True
                    return
                op = operation(self.command, self.path, self.headers)
                if op in proxy.unsupported:  # an S3-compatible server without this call
                    answer = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
                              b"<Message>A header or query you provided implies functionality that is not "
                              b"implemented</Message></Error>")
                    proxy._count(op)
                    self.send_response(501)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                if proxy._count(op):
                    proxy._released.wait()
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect", "connection")}
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                finally:
                    conn.close()
                if op == "s3:UploadPart" and r.status == 200:
                    with proxy._lock:
                        proxy.parts.append((self.path, body))
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        continue
                    self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", r.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _count(self, op: str) -> bool:
        """Count one request; True when it must be held."""
        with self._lock:
            self.counts[op] += 1
            limit = self._hold.get(op)
            return limit is not None and self.counts[op] > limit

    def hold(self, op: str, *, after: int) -> None:
        with self._lock:
            self._hold[op] = after

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self._hold.clear()

    def close(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(moto_url: str) -> Iterator[CountingProxy]:
    p = CountingProxy(moto_url)
    yield p
    p.close()
