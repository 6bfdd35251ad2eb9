"""Converting vault files: the use case behind ``livedata convert``.

A conversion reads one version of a vault file into a private working folder,
runs one engine (or two, through an intermediate format), and stores the
result as a normal vault file through :func:`livedata_cli.vault.upload.upload` (so deduplication,
versions, the journal and the audit trail all apply), with ``derived_from``
naming the source version and the source's tags copied.  The source is never
written.  Plaintext exists only in the working folder, removed however the
command ends.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from livedata_cli import envfail, interrupt, localfs
from livedata_cli.convert import base
from livedata_cli.convert.base import DEFAULT_TIMEOUT, Request, Step
from livedata_cli.convert.queue import DEFAULT_LEASE, Job, Queue
from livedata_cli.errors import ConversionFailed, ExitCode, LivedataError, NotFound, UsageError

if TYPE_CHECKING:
    from livedata_cli.index.core import Version
    from livedata_cli.vault.core import Vault

ItemProgress = Callable[[int, float], None]  # (item number, fraction done)


@dataclass
class Options:
    """How to convert; also what a queued job remembers."""

    to: str
    engine: str | None = None
    quality: int | None = None
    keep_metadata: bool = False
    timeout: float = DEFAULT_TIMEOUT
    output: str | None = None  # also write the result here (a file, or a folder for several)
    store: bool = True  # False: only written locally

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Options:
        fields = Options.__dataclass_fields__
        return Options(**{k: v for k, v in data.items() if k in fields})


@dataclass
class Item:
    """What happened to one source file."""

    source: str
    source_id: str
    path: str  # the result's vault path
    status: str = "failed"  # converted, queued, failed
    engine: str = ""
    size: int = 0
    id: str | None = None  # the result's version id, when stored
    stored: str | None = None  # new, changed or unchanged (same content as the newest version)
    output: str | None = None
    job: str | None = None
    error: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": self.source,
            "source_id": self.source_id,
            "path": self.path,
            "status": self.status,
            "engine": self.engine,
            "size": self.size,
            "id": self.id,
            "stored": self.stored,
            "output": self.output,
            "job": self.job,
        }
        if self.error:
            d["error"] = self.error
            d["exit_code"] = self.exit_code
        return d

    def failed(self, err: BaseException) -> None:
        self.status = "failed"
        if isinstance(err, LivedataError):
            self.error, self.exit_code = err.message, int(err.exit_code)
        elif isinstance(err, OSError):
            self.error, self.exit_code = f"{err.strerror or err}", int(ExitCode.UNEXPECTED)
        else:
            self.error, self.exit_code = f"{type(err).__name__}: {err}", int(ExitCode.UNEXPECTED)


@dataclass
class Report:
    items: list[Item] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    @property
    def failed(self) -> list[Item]:
        return [i for i in self.items if i.status == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.status] = out.get(i.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [i.to_json() for i in self.items],
            "counts": self.counts(),
            "duration": round(self.duration, 3),
        }


# -- choosing what to convert ------------------------------------------------------
def select(vault: Vault, refs: list[str]) -> list[Version]:
    """The newest versions named by vault paths, version ids or globs (``photos/*.png``;
    ``*`` stays within one folder, ``**`` crosses folders)."""
    from livedata_cli.localfs import clean_vault_path

    out: list[Version] = []
    seen: set[str] = set()
    for ref in refs:
        if any(c in ref for c in "*?["):
            found = _glob(vault, clean_vault_path(ref))
            if not found:
                vault.sync()
                found = _glob(vault, clean_vault_path(ref))
            if not found:
                raise NotFound(f"{ref}: no file in the vault matches")
        else:
            found = [vault.resolve(ref)]
        for v in found:
            if v.kind != "file":
                raise UsageError(f"{v.path} is a {v.kind}, not a file")
            if v.vid not in seen:
                seen.add(v.vid)
                out.append(v)
    return out


def _glob(vault: Vault, pattern: str) -> list[Version]:
    head = pattern.split("/")
    fixed: list[str] = []
    for part in head[:-1]:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    prefix = "/".join(fixed) + "/" if fixed else ""
    wanted = PurePosixPath(pattern).parts
    out = []
    for v in vault.files_under(prefix):
        if v.kind != "file":
            continue
        parts = PurePosixPath(v.path).parts
        if "**" in wanted:
            if fnmatch.fnmatchcase(v.path, pattern.replace("**", "*")):
                out.append(v)
        elif len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True)):
            out.append(v)
    return sorted(out, key=lambda v: v.path)


def targets(sources: list[Version], to: str, as_path: str | None) -> list[str]:
    """Each source's result path: its own path with the new extension, or ``--as``."""
    from livedata_cli.localfs import clean_vault_path

    fmt = base.norm_format(to)
    if as_path is not None and len(sources) > 1 and not as_path.endswith("/"):
        raise UsageError("--as names one file: with several sources give a folder ending in '/'")
    out = []
    for v in sources:
        stem = v.path.rsplit("/", 1)[-1]
        if "." in stem.strip("."):
            stem = stem.rsplit(".", 1)[0]
        name = f"{stem}.{fmt}"
        if as_path is None:
            folder = v.path.rsplit("/", 1)[0] + "/" if "/" in v.path else ""
            path = folder + name
        elif as_path.endswith("/"):
            path = clean_vault_path(as_path, folder=True) + name
        else:
            path = clean_vault_path(as_path)
        if not path:
            raise UsageError(f"--as: {as_path!r} is not a file path")
        if path == v.path:
            raise UsageError(f"{v.path}: the result would replace its own source; give --as")
        out.append(path)
    dupes = {p for p in out if out.count(p) > 1}
    if dupes:
        raise UsageError(f"two sources would both become {sorted(dupes)[0]}: convert them separately or give --as")
    return out


def plan(vault: Vault, refs: list[str], opts: Options, as_path: str | None) -> list[tuple[Version, str]]:
    from livedata_cli.vault import file_passwords

    sources = select(vault, refs)
    for v in sources:
        file_passwords.check_file_password(vault, v)  # a protected source: its password first, before any work
    return list(zip(sources, targets(sources, opts.to, as_path), strict=True))


# -- converting now -------------------------------------------------------------------
def convert(
    vault: Vault,
    pairs: list[tuple[Version, str]],
    opts: Options,
    *,
    jobs: int = 1,
    wait_lock: bool = True,
    progress: ItemProgress | None = None,
) -> Report:
    """Convert each (source version, result path) pair; store the results in one upload."""
    if opts.output:
        check_output(opts.output, many=len(pairs) > 1)
    report = Report(
        items=[Item(v.path, v.vid, target, engine=opts.engine or "") for v, target in pairs]
    )
    with base.private_workdir() as work:
        produced: dict[int, Path] = {}

        def one(n: int) -> None:
            v, target = pairs[n]
            item = report.items[n]
            try:
                steps = base.route(base.format_of(v.path), base.norm_format(opts.to), opts.engine)
                item.engine = "+".join(s.engine.name for s in steps)
                produced[n] = _produce(vault, v, target, steps, work / f"job{n}", opts, progress, n)
                item.size = produced[n].stat().st_size
                item.status = "converted"
            except (LivedataError, OSError) as e:
                item.failed(e)
                vault.events.failed("convert", v.path, e, obj=v.object)

        if jobs <= 1 or len(pairs) == 1:
            for n in range(len(pairs)):
                one(n)
        else:
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(one, range(len(pairs))))
        done = [n for n in range(len(pairs)) if n in produced]
        if opts.output:
            _write_outputs(report, produced, done, opts.output, many=len(pairs) > 1)
        if opts.store and done:
            with vault.lock(wait=wait_lock):
                _store(vault, pairs, report, produced, done)
        for n in done:
            item = report.items[n]
            if item.status == "converted":
                v = pairs[n][0]
                vault.events.add(
                    "convert",
                    item.path,
                    detail=f"from {v.path} ({v.vid}) to {base.norm_format(opts.to)} by {item.engine}",
                )
    report.duration = time.monotonic() - report.started
    return report


def _produce(
    vault: Vault,
    v: Version,
    target: str,
    steps: list[Step],
    folder: Path,
    opts: Options,
    progress: ItemProgress | None,
    n: int,
) -> Path:
    folder.mkdir(mode=0o700)

    def report(fraction: float) -> None:
        if progress is not None:
            progress(n, fraction)

    from livedata_cli.vault.reading import read_version

    src = folder / f"source.{steps[0].src}"
    with open(src, "wb") as f:
        read_version(vault, v, f)
    report(0.05)
    current = src
    title = target.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    for i, step in enumerate(steps):
        dst = folder / f"result{i}.{step.dst}"
        share = 0.9 / len(steps)
        start = 0.05 + i * share

        def step_progress(fraction: float, start: float = start, share: float = share) -> None:
            report(start + share * fraction)

        step.engine.convert(
            Request(
                src=current,
                dst=dst,
                src_fmt=step.src,
                dst_fmt=step.dst,
                workdir=folder,
                timeout=opts.timeout,
                quality=opts.quality,
                keep_metadata=opts.keep_metadata,
                title=title,
                progress=step_progress,
            )
        )
        if not dst.exists():
            raise ConversionFailed(f"{step.engine.name} wrote no output")
        current = dst
    os.chmod(current, (v.mode or 0o600) & 0o777)
    return current


def check_output(output: str, *, many: bool) -> None:
    """Refuse an ``-o`` that cannot take a file before any engine runs (a
    conversion can take minutes): a temporary file is made and removed where
    the result's would be."""
    out = Path(output)
    try:
        mode = os.stat(out).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return  # a device or a pipe: written as a stream
    folder = out if many or output.endswith("/") or (mode is not None and stat.S_ISDIR(mode)) else out.parent
    while not os.path.lexists(folder) and folder.parent != folder:  # the write makes the rest
        folder = folder.parent
    try:
        tmp, fd = localfs.create_temporary(folder)
    except OSError as e:
        raise UsageError(f"cannot write {output} ({e.strerror or e}): choose another -o") from None
    os.close(fd)
    tmp.unlink(missing_ok=True)
    interrupt.kept(tmp)


def _write_outputs(report: Report, produced: dict[int, Path], done: list[int], output: str, *, many: bool) -> None:
    out = Path(output)
    as_folder = many or output.endswith("/") or out.is_dir()
    if as_folder:
        out.mkdir(parents=True, exist_ok=True)
    for n in done:
        item = report.items[n]
        target = out / item.path.rsplit("/", 1)[-1] if as_folder else out
        try:
            with open(produced[n], "rb") as src:  # written as a download is: no partial file
                localfs.write_file(
                    target, lambda f: _copied(src, f), mode=os.fstat(src.fileno()).st_mode & 0o777
                )
            item.output = str(target)
        except OSError as e:  # named as the output, not the source
            envfail.register(envfail.TARGET, target.parent, target)
            item.failed(envfail.translate(e, place=envfail.TARGET) or e)


def _copied(src: BinaryIO, dst: BinaryIO) -> int:
    shutil.copyfileobj(src, dst, 1 << 20)
    return src.tell()


def _store(vault: Vault, pairs: list[tuple[Version, str]], report: Report, produced: dict[int, Path], done: list[int]) -> None:
    """Upload the results, one upload per set of tags (the sources' tags are copied)."""
    from livedata_cli.vault import upload
    from livedata_cli.vault.reports import BatchReport

    groups: dict[tuple[str, ...], list[int]] = {}
    for n in done:
        if report.items[n].status == "converted":
            groups.setdefault(tuple(pairs[n][0].tags), []).append(n)
    for tags, ns in groups.items():
        batch = BatchReport()
        plan = []
        for n in ns:
            plan += upload.plan_upload(
                vault, [str(produced[n])], as_path=pairs[n][1], recursive=False, excludes=[], report=batch
            )
        upload.upload(
            vault,
            plan,
            tags=list(tags),
            report=batch,
            jobs=1,
            derived_from={pairs[n][1]: pairs[n][0].vid for n in ns},
        )
        by_path = {i.path: i for i in batch.items}
        for n in ns:
            item = report.items[n]
            got = by_path.get(item.path)
            if got is None:
                failed = next((i for i in batch.items if i.source == str(produced[n])), None)
                item.status, item.error = "failed", failed.error if failed else "not stored"
                item.exit_code = failed.exit_code if failed else int(ExitCode.UNEXPECTED)
            elif got.status == "failed":
                item.status, item.error, item.exit_code = "failed", got.error, got.exit_code
            else:
                item.id, item.stored = got.version, got.status


# -- the queue ---------------------------------------------------------------------------
def enqueue(queue: Queue, pairs: list[tuple[Version, str]], opts: Options) -> Report:
    """Queue each pair as a job (checked first: an impossible conversion is refused now)."""
    report = Report()
    for v, target in pairs:
        steps = base.route(base.format_of(v.path), base.norm_format(opts.to), opts.engine)
        job = queue.add(
            source=v.path, source_id=v.vid, target=target, to_format=base.norm_format(opts.to), options=opts.to_json()
        )
        engine = "+".join(s.engine.name for s in steps)
        report.items.append(Item(v.path, v.vid, target, status="queued", engine=engine, job=job.id))
    report.duration = time.monotonic() - report.started
    return report


@dataclass
class WorkerStats:
    done: int = 0
    failed: int = 0


def work(
    vault: Vault,
    queue: Queue,
    *,
    worker: str,
    lease: float = DEFAULT_LEASE,
    once: bool = False,
    poll: float = 2.0,
    after_job: Callable[[Job, Item], None] | None = None,
) -> WorkerStats:
    """Process queued jobs until none is left (``once``) or forever."""
    stats = WorkerStats()
    while True:
        job = queue.claim(worker, lease)
        if job is None:
            if once:
                return stats
            time.sleep(poll)
            continue
        item = run_job(vault, queue, job, worker=worker, lease=lease)
        if item.status == "failed":
            stats.failed += 1
        else:
            stats.done += 1
        if after_job is not None:
            after_job(queue.get(job.id), item)


def run_job(vault: Vault, queue: Queue, job: Job, *, worker: str, lease: float) -> Item:
    """Run one claimed job, renewing its lease while it runs; record how it ended."""
    latest: list[float | None] = [None]
    stop = threading.Event()
    last_write = [0.0]

    def heartbeat() -> None:
        while not stop.wait(lease / 3):
            queue.renew(job.id, worker, lease, latest[0])

    def on_progress(_n: int, fraction: float) -> None:
        latest[0] = fraction
        now = time.monotonic()
        if now - last_write[0] >= 1.0:
            last_write[0] = now
            queue.renew(job.id, worker, lease, fraction)

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
        source = vault.index.version_by_id(job.source_id)
        if source is None:
            vault.sync()
            source = vault.index.version_by_id(job.source_id)
        if source is None:
            item = Item(job.source, job.source_id, job.target)
            item.failed(NotFound(f"{job.source}: the version to convert ({job.source_id}) is no longer in the vault"))
        else:
            opts = Options.from_json(job.options)
            item = convert(vault, [(source, job.target)], opts, progress=on_progress).items[0]
    except LivedataError as e:  # the vault or its store failed this job, not the worker
        item = Item(job.source, job.source_id, job.target)
        item.failed(e)
    except BaseException:
        stop.set()
        queue.release(job.id, worker)  # stopped, not failed: another worker may take it
        raise
    stop.set()
    beat.join(timeout=5)
    item.job = job.id
    if item.status == "failed":
        queue.fail(job.id, worker, item.error or "failed")
    else:
        queue.done(job.id, worker, result_id=item.id, engine=item.engine)
    return item
