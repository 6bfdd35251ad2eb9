"""Load the hosted API: PostgreSQL, 2 workers, a separate load process on 127.0.0.1.

Measures requests/s and p99 latency of authenticated file listing and
metadata reads at 32 concurrent clients, and MB/s of concurrent 10 MiB
uploads.  Run with `make bench-server`; prints one JSON document.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pgserver  # noqa: E402

CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
UPLOADS = int(os.environ.get("BENCH_UPLOADS", "32"))
UPLOAD_CLIENTS = int(os.environ.get("BENCH_UPLOAD_CLIENTS", "8"))
# BENCH_BATCHED=0 skips the second server (with --audit-batch-ms), e.g. to run this against older code.
MIB = 1024 * 1024


# What the issue measured before the upload limits, read timeouts and audit batching (2 cores).
BEFORE = {
    "list_files": {"rps": 155, "p99_ms": 953},
    "get_metadata": {"rps": 180, "p99_ms": 914},
    "upload_10MiB": {"MB_per_s": 210},
}


def start_server(home: Path, db_url: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "LIVEDATA_HOME": str(home)}
    exe = shutil.which("livedata", path=str(Path(sys.executable).parent)) or "livedata"
    proc = subprocess.Popen(
        [exe, "server", "--port", "0", "--workers", "2", "--db", db_url, *extra],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if '"listening"' in line:
            url = json.loads(line)["url"]
            break
    else:
        raise SystemExit("server did not start")
    # Drain the JSON access log so the pipe never blocks the server.
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    return proc, url


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server process and its workers: a figure the other
    programs on a shared machine disturb far less than requests per second."""
    total = 0.0
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(x) for x in task.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


SERVER_PID = 0


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def closed_loop(url: str, token: str, paths: list[str]) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits) as c:
        stop = time.perf_counter() + SECONDS

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = await c.get(random.choice(paths))
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        cpu0 = server_cpu(SERVER_PID)
        await asyncio.gather(*(one() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - t0
        cpu = server_cpu(SERVER_PID) - cpu0
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "server_cpu_ms_per_request": round(cpu / max(1, len(latencies)) * 1000, 2),
    }


async def uploads(url: str, token: str) -> dict[str, float]:
    data = os.urandom(10 * MIB)
    queue = list(range(UPLOADS))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:

        async def worker() -> None:
            while queue:
                queue.pop()
                r = await c.post("/api/v1/files", params={"file_name": "bench"}, content=data)
                assert r.status_code == 201, r.text

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(UPLOAD_CLIENTS)))
        elapsed = time.perf_counter() - t0
    return {
        "uploads": UPLOADS,
        "concurrent": UPLOAD_CLIENTS,
        "seconds": round(elapsed, 2),
        "MB_per_s": round(UPLOADS * 10 * MIB / 1e6 / elapsed, 1),
    }


async def resumable_uploads(url: str, token: str) -> dict[str, float]:
    """The same bytes through /files/uploads in 8 MiB parts, as the CLI sends large objects."""
    data = os.urandom(10 * MIB)
    part = 8 * MIB
    queue = list(range(UPLOADS))
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:

        async def worker() -> None:
            while queue:
                queue.pop()
                up = (await c.post("/api/v1/files/uploads", params={"file_name": "bench-r"})).json()["id"]
                for first in range(0, len(data), part):
                    last = min(len(data), first + part) - 1
                    r = await c.put(
                        f"/api/v1/files/uploads/{up}", content=data[first : last + 1],
                        headers={"Content-Range": f"bytes {first}-{last}/{len(data)}"},
                    )
                    assert r.status_code == 200, r.text
                r = await c.post(f"/api/v1/files/uploads/{up}/complete")
                assert r.status_code == 201, r.text

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(UPLOAD_CLIENTS)))
        elapsed = time.perf_counter() - t0
    return {
        "uploads": UPLOADS,
        "concurrent": UPLOAD_CLIENTS,
        "seconds": round(elapsed, 2),
        "MB_per_s": round(UPLOADS * 10 * MIB / 1e6 / elapsed, 1),
    }


def seed(url: str) -> tuple[str, list[str]]:
    with httpx.Client(base_url=url, timeout=60) as c:
        c.post("/api/v1/auth/register", json={"email": "bench@example.com", "password": "bench password 1"})
        token = c.post("/api/v1/auth/login", json={"email": "bench@example.com", "password": "bench password 1"}).json()[
            "access_token"
        ]
        auth = {"Authorization": f"Bearer {token}"}
        ids = [
            c.post("/api/v1/files", params={"file_name": f"f{i}", "tag": "bench"}, content=os.urandom(1024), headers=auth).json()["id"]
            for i in range(200)
        ]
    return token, ids


def main() -> None:
    pg = pgserver.start()
    home = Path(tempfile.mkdtemp(prefix="livedata-bench-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        global SERVER_PID
        proc, url = start_server(home, pg.create_database())
        procs.append(proc)
        SERVER_PID = proc.pid
        token, ids = seed(url)
        result: dict[str, object] = {
            "server": "livedata server --workers 2 --db postgresql (PostgreSQL 15)",
            "cpus": os.cpu_count(),
            "clients": CLIENTS,
            "before_limits (issue figures)": BEFORE,
            "list_files": asyncio.run(closed_loop(url, token, ["/api/v1/files?per_page=50"])),
            "get_metadata": asyncio.run(closed_loop(url, token, [f"/api/v1/files/{i}" for i in ids])),
            "upload_10MiB": asyncio.run(uploads(url, token)),
            "resumable_upload_10MiB_in_8MiB_parts": asyncio.run(resumable_uploads(url, token)),
        }
        proc.terminate()
        proc.wait(30)
        if os.environ.get("BENCH_BATCHED", "1") == "0":
            print(json.dumps(result, indent=2))
            return
        # The same metadata reads with their audit records written in batches every 200 ms.
        proc, url = start_server(home / "batched", pg.create_database(), "--audit-batch-ms", "200")
        procs.append(proc)
        SERVER_PID = proc.pid
        token, ids = seed(url)
        result["get_metadata_audit_batched_200ms"] = asyncio.run(
            closed_loop(url, token, [f"/api/v1/files/{i}" for i in ids])
        )
        print(json.dumps(result, indent=2))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        pgserver.stop(pg)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
