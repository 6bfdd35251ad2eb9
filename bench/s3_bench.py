"""S3 benchmark: livedata's encrypted upload and download of one large file to a
local S3-protocol server (moto's server mode on 127.0.0.1), next to boto3's own
``upload_file``/``download_file`` of the same plaintext to the same server, in
one run.  Prints seconds, MB/s, peak RSS (GNU time) and livedata's share of
boto3's throughput (the bar: at least 0.80).

    python bench/s3_bench.py                 # 1 GiB (BENCH_SIZE_MIB)
    BENCH_RSS_LIMIT_MIB=300 python bench/s3_bench.py

Environment (all optional): BENCH_SIZE_MIB (1024), BENCH_DIR (/tmp/ldbench-s3;
needs about 3x the size free, and the server spools objects to the system's
temporary folder), BENCH_RSS_LIMIT_MIB (300: livedata's peak RSS allowed),
LIVEDATA_BIN (default: the venv's livedata).  Exit 1 when livedata misses the
RSS limit or the throughput bar.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
SIZE_MIB = int(os.environ.get("BENCH_SIZE_MIB", "1024"))
WORK = Path(os.environ.get("BENCH_DIR", "/tmp/ldbench-s3"))
RSS_LIMIT_MIB = int(os.environ.get("BENCH_RSS_LIMIT_MIB", "300"))
BAR = 0.80
LD = os.environ.get("LIVEDATA_BIN") or str(Path(PY).parent / "livedata")
BUCKET = "ldbench"

BOTO3_JOB = """
import sys, boto3
from botocore.config import Config
op, path, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", config=Config(
    request_checksum_calculation="when_required", response_checksum_validation="when_required",
    s3={"addressing_style": "path"}, retries={"mode": "standard"}))
if op == "up":
    s3.upload_file(path, bucket, "plain/big.bin")
else:
    s3.download_file(bucket, "plain/big.bin", path)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(label: str, cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run under GNU time; return (seconds, peak RSS KiB)."""
    tfile = WORK / ".time"
    t0 = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(tfile), *cmd],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    seconds = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"s3_bench: {label} failed ({p.returncode}): {p.stderr.strip()}")
    return seconds, int(tfile.read_text().split()[-1])


def row(label: str, seconds: float, size: int, rss_kib: int) -> str:
    return f"{label:<30} {seconds:7.2f}s {size / seconds / 1e6:8.0f} MB/s  {rss_kib // 1024:6d} MiB"


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    size = SIZE_MIB * 1024 * 1024
    src = WORK / "big.bin"
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LIVEDATA_"))
    } | {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "LIVEDATA_HOME": str(WORK / "home"),
        "LIVEDATA_PASSPHRASE": "bench passphrase",
        "LIVEDATA_NO_KEYRING": "1",
    }
    server = subprocess.Popen(
        [str(Path(PY).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        with open(src, "wb") as f:
            for _ in range(SIZE_MIB):
                f.write(os.urandom(1024 * 1024))
        subprocess.run([PY, "-c", f"import boto3; boto3.client('s3').create_bucket(Bucket='{BUCKET}')"], env=env, check=True)
        subprocess.run([LD, "init", "--store", f"s3://{BUCKET}/vault", "--quiet"], env=env, check=True)

        results: dict[str, tuple[float, int]] = {}
        results["boto3 upload_file"] = timed("boto3 up", [PY, "-c", BOTO3_JOB, "up", str(src), BUCKET], env)
        results["livedata upload"] = timed("livedata up", [LD, "upload", str(src), "--quiet"], env)
        out = WORK / "out.bin"
        results["boto3 download_file"] = timed("boto3 down", [PY, "-c", BOTO3_JOB, "down", str(out), BUCKET], env)
        out.unlink()
        results["livedata download"] = timed("livedata down", [LD, "download", "big.bin", "-o", str(out), "--quiet"], env)
        same = subprocess.run(["cmp", "-s", str(src), str(out)]).returncode == 0
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(WORK, ignore_errors=True)

    print(f"S3 benchmark: {SIZE_MIB} MiB random file, local moto server ({endpoint}), one run")
    for label, (seconds, rss) in results.items():
        print(row(label, seconds, size, rss))
    up = results["boto3 upload_file"][0] / results["livedata upload"][0]
    down = results["boto3 download_file"][0] / results["livedata download"][0]
    rss = max(results["livedata upload"][1], results["livedata download"][1]) // 1024
    print(f"livedata / boto3 throughput: upload {up:.2f}, download {down:.2f} (bar {BAR:.2f})")
    print(f"livedata peak RSS: {rss} MiB (limit {RSS_LIMIT_MIB} MiB); download identical: {same}")
    ok = same and rss <= RSS_LIMIT_MIB and up >= BAR and down >= BAR
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
