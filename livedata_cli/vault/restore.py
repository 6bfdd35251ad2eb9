"""Restores and data checks of many files: plan first, then fetch in ranges, in parallel.

A folder download (``livedata download PREFIX/ -o DIR``) and ``verify --data``
used to read file by file: one request (two on S3: the first range, then the
seek) and one decryption at a time.  Here the whole selection is planned
first:

- packed members (``pack``, ``offset``, ``length`` in their records) are
  grouped by pack and sorted by offset, and neighbours are coalesced into runs:
  one ranged read per run of members (gaps up to :data:`MAX_GAP` are read and
  dropped, a run holds at most :data:`MAX_RUN` bytes), not one per member;
- a small object of its own is one read of the whole object (one byte more
  than its record says, so an object the store extended is caught);
- a large object streams as a single download does (segment by segment, with
  the store's own read-ahead), a few at a time.

Runs are fetched on a pool of threads (:data:`REMOTE_THREADS` for S3 and the
API store, :data:`LOCAL_THREADS` for a folder), each thread decrypting and
writing the members of its run, while :class:`_Budget` keeps the fetched bytes
in memory under :data:`BYTES_IN_FLIGHT`.  Every member is still opened by the
container reader (header hash against its record, header MAC, key commitment,
each segment's GCM tag), and each file is written the way a single download
writes it (:func:`livedata_cli.localfs.write_file`): a temporary file renamed into
place only after its final segment authenticated.  A member that fails fails
its file only; the others are restored, and the batch ends with exit 8.

A batch of :data:`restore_workers.MIN_FILES` small files or more on a machine
with several cores opens and writes its fetched members in forked worker
processes instead of the writer threads (:mod:`livedata_cli.vault.restore_workers`):
it is Python work per file, which threads only take turns at.

Nothing here touches the index from a worker thread: a file's password is
asked for, and a pack a prune on another machine moved is looked up again
(which syncs), on the command's own thread.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from livedata_cli import envfail, forked, localfs, names, packs
from livedata_cli.crypto import container
from livedata_cli.errors import IntegrityError, LivedataError, NotFound, UsageError
from livedata_cli.index.core import Version
from livedata_cli.stores import ObjectStore, RangedReads
from livedata_cli.vault import restore_workers
from livedata_cli.vault.reading import already_restored, download_to, read_version
from livedata_cli.vault.reports import ItemResult

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from livedata_cli.vault.core import Vault
    from livedata_cli.vault.reports import BatchReport

Progress = Callable[[int], None]

# Gaps between wanted members up to this size are read and dropped: on S3 or
# over the API a request costs more than reading a mebibyte it did not need.
MAX_GAP = 1024 * 1024
# One ranged read holds at most this much (unless one member alone is larger).
MAX_RUN = 8 * 1024 * 1024
# Objects of their own up to this size are read whole in one request; larger
# ones stream segment by segment.
WHOLE_OBJECT = 2 * 1024 * 1024
# Fetched but not yet written bytes, at most (plus one run larger than this).
BYTES_IN_FLIGHT = 64 * 1024 * 1024
# Requests in flight: a remote store answers many at once; a folder store is
# limited by the disk and the GIL, and a few threads already overlap them.
REMOTE_THREADS = 12
LOCAL_THREADS = 4
# Large files streamed at once (each has its store's read-ahead in memory).
LARGE_JOBS = 2
# Threads that decrypt and write the members of fetched runs, a few members a
# task: AES-GCM and file system calls release the GIL, so they overlap.
WRITE_THREADS = 4
MEMBERS_A_TASK = 32


# -- the plan ------------------------------------------------------------------------
@dataclass
class Job:
    """One file version to restore or check."""

    position: int  # in the batch's order: results are reported in it
    v: Version
    target: Path | None = None  # None: check only (verify --data)
    data_key: bytes | None = None  # worked out beforehand (a file password may be asked)
    fresh: bool = False  # the planner made its folder: the target is replaced, never opened


@dataclass
class Run:
    """Bytes ``start``..``end`` of one store object and the members inside them."""

    key: str
    start: int
    end: int
    jobs: list[Job] = field(default_factory=list)
    whole: bool = False  # an object of its own: it must end where its record says


def member_span(v: Version) -> tuple[int, int]:
    """Where a version's container sits in its store object."""
    return v.offset, v.offset + v.length


def is_large(v: Version) -> bool:
    """Whether a version streams on its own instead of going into a run."""
    if v.pack:
        return v.length <= 0 or v.length > MAX_RUN
    return v.offset != 0 or v.length <= 0 or v.length > WHOLE_OBJECT


def plan_runs(jobs: Iterable[Job], *, max_gap: int = MAX_GAP, max_run: int = MAX_RUN) -> list[Run]:
    """Group the jobs that are not large into runs: members of a pack by
    offset, neighbours (gap at most ``max_gap``, the run at most ``max_run``)
    together; an object of its own is a run by itself, read one byte past its
    record's end."""
    by_key: dict[str, list[Job]] = {}
    runs: list[Run] = []
    for job in jobs:
        v = job.v
        if v.pack:
            by_key.setdefault(v.store_key, []).append(job)
        else:
            runs.append(Run(v.store_key, 0, v.length + 1, [job], whole=True))
    for key, members in by_key.items():
        members.sort(key=lambda j: (j.v.offset, j.v.length))
        run: Run | None = None
        for job in members:
            start, end = member_span(job.v)
            if run is not None and start - run.end <= max_gap and max(end, run.end) - run.start <= max_run:
                run.end = max(run.end, end)
                run.jobs.append(job)
                continue
            run = Run(key, start, end, [job])
            runs.append(run)
    return runs


def tasks(jobs: list[Job], size: int = MEMBERS_A_TASK) -> list[list[Job]]:
    """The members of a run in tasks of up to ``size``, each within one folder,
    the folders taking turns: tasks running at once then create files in
    different folders, and do not wait for each other's hold on one (a file
    system changes one folder's entries at a time)."""
    by_folder: dict[Path | None, list[Job]] = {}
    for job in jobs:
        by_folder.setdefault(None if job.target is None else job.target.parent, []).append(job)
    queues = [[group[k : k + size] for k in range(0, len(group), size)] for group in by_folder.values()]
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


# -- reading -------------------------------------------------------------------------
def read_range(store: ObjectStore, key: str, start: int, end: int) -> tuple[bytes, int]:
    """Bytes ``start``..``end`` of an object (fewer when it is shorter) and its size,
    in one request where the store offers one (``read_range``), else by a seek."""
    if isinstance(store, RangedReads):
        return store.read_range(key, start, end)
    with store.open(key) as f:
        total = f.seek(0, io.SEEK_END)
        if start >= total:
            return b"", total
        f.seek(start)
        return f.read(end - start), total


class _Budget:
    """Bytes fetched and not yet written: a run waits until it fits (or nothing
    else is held, so a run larger than the budget still goes, alone)."""

    def __init__(self, limit: int, stop: threading.Event) -> None:
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()
        self._stop = stop  # a stopped batch releases no more: nobody waits for it

    def acquire(self, n: int) -> None:
        with self._cond:
            while self._used and self._used + n > self._limit and not self._stop.is_set():
                self._cond.wait(0.2)
            self._used += n

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()


class _Moved(Exception):
    """The object is gone from the store: perhaps a prune elsewhere moved the pack."""


class _Stopped(_Moved):
    """The batch stops (Ctrl-C, a full target): a file being streamed ends at
    its next segment, its temporary file removed, and is not reported."""


def _locked(progress: Progress, stop: threading.Event) -> Progress:
    lock = threading.Lock()

    def advance(n: int) -> None:
        if stop.is_set():
            raise _Stopped()
        with lock:
            progress(n)

    return advance


Outcome = int | LivedataError | OSError | _Moved  # bytes written, or why not


class _Engine:
    """Runs a plan on thread pools: runs fetched on one, their members opened and
    written on another, large files streamed on a third."""

    def __init__(self, vault: Vault, progress: Progress, *, check_sizes: bool) -> None:
        self.vault = vault
        self.store = vault.store
        self.stop = threading.Event()
        self.progress = _locked(progress, self.stop)
        self.check_sizes = check_sizes  # verify: an object's size against its records
        self.budget = _Budget(BYTES_IN_FLIGHT, self.stop)
        self.fatal_size: int | None = None
        self.threads = REMOTE_THREADS if self.store.remote else LOCAL_THREADS
        self.default_mode = localfs.default_mode()  # once, not once a file
        self.pool: ProcessPoolExecutor | None = None  # workers for small members, while a batch runs

    def data_key(self, job: Job) -> bytes:
        if job.data_key is not None:
            return job.data_key
        return self.vault._data_key(job.v.object, job.v.wrapped_key)

    def open_member(self, job: Job, blob: memoryview | None, dst: BinaryIO) -> int:
        """Authenticate and decrypt one member (from ``blob``, or streamed from the
        store when ``blob`` is None) into ``dst``; the plaintext length."""
        v = job.v
        key = self.data_key(job)
        if blob is not None:
            return restore_workers.open_blob(key, blob, dst, v.header_hash, v.size, v.path, self.progress)
        try:
            source = self.store.open(v.store_key)
        except NotFound:
            raise _Moved() from None
        with source as src:
            if v.offset:
                src.seek(v.offset)
            reader = cast(BinaryIO, packs.Slice(src, v.length)) if v.pack else src
            n = container.decrypt_stream(key, reader, dst, expected_header_hash=v.header_hash, on_progress=self.progress)
        if n != v.size:
            raise IntegrityError(f"{v.path}: {n} bytes decrypted where the record says {v.size}")
        return n

    def finish(self, job: Job, blob: memoryview | None) -> int:
        """Restore (or check) one member."""
        v = job.v
        if job.target is None:
            with open(os.devnull, "wb") as sink:
                return self.open_member(job, blob, sink)
        return localfs.write_file(
            job.target,
            lambda out: self.open_member(job, blob, out),
            mode=self.default_mode if v.mode is None else v.mode,
            mtime=v.mtime,
            fresh=job.fresh,
        )

    def one(self, job: Job, blob: memoryview | None) -> Outcome:
        if self.stop.is_set():
            return _Stopped()  # the command's thread raises before it looks at these
        try:
            n = self.finish(job, blob)
        except (LivedataError, OSError, _Moved) as e:
            if envfail.is_fatal(e):
                self.stop.set()
            return e
        self.vault.events.read(job.v.path, job.v.object)
        return n

    def fetch(self, run: Run) -> tuple[memoryview | None, int, list[tuple[Job, Outcome]]]:
        """Read one run (its bytes count against the budget until its members
        are written); on failure, every member's outcome instead."""
        if self.stop.is_set():
            return None, 0, [(job, _Stopped()) for job in run.jobs]
        size = run.end - run.start
        self.budget.acquire(size)
        if self.stop.is_set():
            self.budget.release(size)
            return None, 0, [(job, _Stopped()) for job in run.jobs]
        try:
            data, total = read_range(self.store, run.key, run.start, run.end)
        except NotFound:
            self.budget.release(size)
            return None, 0, [(job, _Moved()) for job in run.jobs]
        except (LivedataError, OSError) as e:
            self.budget.release(size)
            if envfail.is_fatal(e):
                self.stop.set()
            return None, 0, [(job, e) for job in run.jobs]
        except BaseException:
            self.budget.release(size)
            raise
        return memoryview(data), total, []

    def members(self, run: Run, view: memoryview, total: int, jobs: list[Job]) -> list[tuple[Job, Outcome]]:
        """Open some members of a fetched run (in the worker processes, where
        there are, those whose key the vault key opens)."""
        out: list[tuple[Job, Outcome]] = []
        mine: list[tuple[Job, memoryview]] = []
        for job in jobs:
            problem = self.size_problem(run, job, total)
            if problem is not None:
                out.append((job, problem))
                continue
            start, end = member_span(job.v)
            mine.append((job, view[start - run.start : end - run.start]))
        for (job, blob), done in zip(mine, self.in_workers(mine), strict=True):
            out.append((job, self.one(job, blob) if done is None else done))
        return out

    def in_workers(self, members: list[tuple[Job, memoryview]]) -> list[Outcome | None]:
        """Each member's outcome from the workers; None where the command's
        threads are to open it (no workers, a key the workers cannot open)."""
        if self.pool is None or self.stop.is_set():
            return [None] * len(members)
        sent = [None if job.data_key is not None else self.member(job, blob) for job, blob in members]
        wanted = [m for m in sent if m is not None]
        if not wanted:
            return [None] * len(members)
        try:
            results = iter(self.pool.submit(restore_workers.write_members, wanted).result())
        except BrokenExecutor:  # a worker was killed (out of memory): the threads go on
            return [None] * len(members)
        out: list[Outcome | None] = []
        for (job, _), m in zip(members, sent, strict=True):
            got = None if m is None else next(results)
            if isinstance(got, int):
                self.vault.events.read(job.v.path, job.v.object)
                with contextlib.suppress(_Stopped):
                    self.progress(got)
            elif got is not None and envfail.is_fatal(got):
                self.stop.set()
            out.append(got)
        return out

    def member(self, job: Job, blob: memoryview) -> restore_workers.Member:
        v = job.v
        return restore_workers.Member(
            None if job.target is None else str(job.target), v.path, v.object, v.wrapped_key, v.header_hash,
            v.size, self.default_mode if v.mode is None else v.mode, v.mtime, job.fresh, bytes(blob),
        )

    def size_problem(self, run: Run, job: Job, total: int) -> IntegrityError | None:
        """An object shorter than a record says, or (an object of its own) longer."""
        v = job.v
        end = v.offset + v.length
        if total < end or (run.whole and total != end):
            return IntegrityError(f"object {v.object} is {total} bytes, the record says {end}")
        return None

    def large(self, job: Job) -> list[tuple[Job, Outcome]]:
        """Stream one large version, as a single download does."""
        if self.check_sizes:
            v = job.v
            try:
                total = self.store.size(v.store_key)
            except NotFound:
                return [(job, _Moved())]
            except (LivedataError, OSError) as e:
                return [(job, e)]
            problem = self.size_problem(Run(v.store_key, 0, 0, whole=not v.pack), job, total)
            if problem is not None:
                return [(job, problem)]
        return [(job, self.one(job, None))]

    def run(self, jobs: list[Job]) -> tuple[dict[int, Outcome], list[Job]]:
        """Run every job; returns each one's outcome by position, and the jobs
        whose object was missing (for the command's thread to look up again).

        Runs are fetched on one pool; the members of a fetched run are opened
        and written in chunks on another, so the files of one large run are
        written in parallel too, and a run's bytes are released from the
        budget when its last chunk is done."""
        outcomes: dict[int, Outcome] = {}
        moved: list[Job] = []
        small = [j for j in jobs if not is_large(j.v)]
        large = [j for j in jobs if is_large(j.v)]
        runs = plan_runs(small)
        workers = restore_workers.workers_for(len(small))
        if workers:  # forked before any thread of this batch starts
            self.pool = restore_workers.start(self.vault.master_key, self.vault.vault_id, workers)
        try:
            return self._run(runs, large, outcomes, moved)
        except BaseException:
            # What the files not restored need, for a full target's message.
            self.fatal_size = sum(j.v.size for j in jobs if not isinstance(outcomes.get(j.position), int))
            raise
        finally:
            if self.pool is not None:
                forked.stop(self.pool, finished=not self.stop.is_set())
                self.pool = None

    def _run(
        self, runs: list[Run], large: list[Job], outcomes: dict[int, Outcome], moved: list[Job]
    ) -> tuple[dict[int, Outcome], list[Job]]:
        fatal: BaseException | None = None
        chunks_left: dict[int, int] = {}  # run index -> chunks not yet done
        with (
            ThreadPoolExecutor(self.threads, thread_name_prefix="livedata-fetch") as fetchers,
            ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="livedata-write") as writers,
            ThreadPoolExecutor(LARGE_JOBS, thread_name_prefix="livedata-large") as big,
        ):
            what: dict[Future[Any], tuple[str, int]] = {}
            # Each future is handed over as it ends: waiting on all of them at
            # once would cost a pass over every pending future per result.
            ended: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()

            def submit(pool: ThreadPoolExecutor, tag: tuple[str, int], fn: Callable[..., Any], *args: Any) -> None:
                f = pool.submit(fn, *args)
                what[f] = tag
                f.add_done_callback(ended.put)

            for i, r in enumerate(runs):
                submit(fetchers, ("fetch", i), self.fetch, r)
            for j in large:
                submit(big, ("large", -1), self.large, j)

            def record(results: list[tuple[Job, Outcome]]) -> None:
                nonlocal fatal
                for job, outcome in results:
                    if isinstance(outcome, _Moved):
                        moved.append(job)
                        continue
                    outcomes[job.position] = outcome
                    if fatal is None and isinstance(outcome, BaseException) and envfail.is_fatal(outcome):
                        fatal = outcome

            try:
                while what and fatal is None:
                    f = ended.get()
                    kind, i = what.pop(f)
                    if kind == "large":
                        record(f.result())
                    elif kind == "fetch":
                        view, total, failed = f.result()
                        record(failed)
                        if view is None:
                            continue
                        r = runs[i]
                        parts = tasks(r.jobs)
                        chunks_left[i] = len(parts)
                        for part in parts:
                            submit(writers, ("members", i), self.members, r, view, total, part)
                    else:
                        record(f.result())
                        chunks_left[i] -= 1
                        if not chunks_left[i]:
                            self.budget.release(runs[i].end - runs[i].start)
            except BaseException:
                self.stop.set()
                for f in what:
                    f.cancel()
                raise
            if fatal is not None:
                self.stop.set()
                for f in what:
                    f.cancel()
        if fatal is not None:
            raise fatal
        return outcomes, moved


# -- restoring a tree ------------------------------------------------------------------
def restore_tree(
    vault: Vault,
    versions: list[Version],
    prefix: str,
    root: Path,
    *,
    overwrite: bool,
    report: BatchReport,
    progress: Progress,
) -> BatchReport:
    """Restore entries under ``prefix`` into ``root`` (``Vault.download_tree``)."""

    vault.unlock()  # a wrong passphrase fails the command once, not each file
    vault.cfg  # noqa: B018  read (and checked) here, not first on a worker thread
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file, a device or a dangling link
        raise UsageError(f"{names.shown(str(root))} is not a folder: choose another -o") from None
    folders: list[tuple[Path, Version]] = []
    cleaned: set[Path] = set()  # folders rid of a killed restore's temporary files
    results: dict[int, ItemResult] = {}
    jobs: list[Job] = []
    ordered = sorted(versions, key=lambda x: x.path)

    def failed(position: int, v: Version, rel: str, e: LivedataError | OSError) -> None:
        if envfail.is_fatal(e):  # a full target fails every later file too
            raise envfail.translate(e, needed=v.size, place=envfail.TARGET) or e from None
        before = len(report.items)
        report.fail(v.path, rel, e)
        results[position] = report.items.pop(before)
        vault.events.failed("download", v.path, e, v.object)

    places = localfs.Targets(root)  # the root's real path once, each folder's once
    for position, v in enumerate(ordered):
        rel = v.path[len(prefix) :]
        try:
            target, parent = places.place(rel)
            if parent not in cleaned:
                cleaned.add(parent)
                localfs.remove_stale_temps(parent)
            if v.kind == "dir":
                if target.is_symlink():  # never follow a link out of the target
                    raise IntegrityError(f"refusing to restore into {target}: it is a symlink")
                existed = target.is_dir()
                if not existed and os.path.lexists(target):
                    raise UsageError(f"{names.shown(str(target))} is not a folder: the folder is not restored over it")
                places.make_folder(target)
                folders.append((target, v))
                results[position] = ItemResult(v.path, str(target), "unchanged" if existed else "downloaded", 0, v.vid)
                continue
            try:
                found = os.lstat(target)  # one call: a file, a folder, or a link (even a dangling one)
            except (FileNotFoundError, NotADirectoryError):
                found = None
            if found is not None and stat.S_ISDIR(found.st_mode):  # --overwrite never removes a folder
                raise UsageError(f"{names.shown(str(target))} is a folder: the {v.kind} is not restored over it")
            if found is not None and not overwrite:
                if already_restored(vault, v, target):  # a rerun: restored before, still the same
                    progress(v.size)
                    results[position] = ItemResult(v.path, str(target), "unchanged", v.size, v.vid)
                    continue
                raise UsageError(f"{names.shown(str(target))} exists: add --overwrite to replace it")
            if v.kind == "symlink":
                places.make_folder(parent)
                localfs.make_symlink(target, names.to_local(v.target or ""), v.mtime)
                places.forget()  # entries below it are checked against the link
                results[position] = ItemResult(v.path, str(target), "downloaded", 0, v.vid)
                continue
            places.make_folder(parent)
            key = vault._data_key(v.object, v.wrapped_key) if v.protected else None
            # Whatever is there (a file, a link, a pipe) is replaced, never written through.
            jobs.append(Job(position, v, target, key, fresh=True))
        except (LivedataError, OSError) as e:
            failed(position, v, rel, e)

    engine = _Engine(vault, progress, check_sizes=False)
    try:
        outcomes, moved = engine.run(jobs)
    except (LivedataError, OSError) as e:
        raise envfail.translate(e, needed=engine.fatal_size, place=envfail.TARGET) or e from None
    for job in moved:  # its pack is gone: a prune elsewhere may have moved it (this syncs)
        assert job.target is not None
        try:
            outcomes[job.position] = download_to(vault, job.v, job.target, progress, fresh=True)
        except (LivedataError, OSError) as e:
            outcomes[job.position] = e
    for job in jobs:
        v, outcome = job.v, outcomes[job.position]
        if isinstance(outcome, int):
            results[job.position] = ItemResult(v.path, str(job.target), "downloaded", outcome, v.vid)
            report.bytes_read += outcome
        else:
            failed(job.position, v, v.path[len(prefix) :], cast(LivedataError | OSError, outcome))
    report.items.extend(results[p] for p in sorted(results))
    for target, v in reversed(folders):
        try:
            localfs.set_folder_times_and_mode(target, v.mtime, v.mode)
        except OSError as e:
            report.fail(v.path, str(target), e)
    return report


# -- verify --data ------------------------------------------------------------------------
def verify_data(vault: Vault, versions: list[Version], progress: Progress) -> list[dict[str, str]]:
    """Authenticate every byte of these versions (one per data object), in
    parallel and in ranges; the problems, in the order of ``versions``.  A
    protected version, whose key needs its file password, gets its size checked."""
    vault.cfg  # noqa: B018
    problems: dict[int, dict[str, str]] = {}
    jobs: list[Job] = []
    sizes: dict[str, int] = {}
    for position, v in enumerate(versions):
        if not v.protected:
            jobs.append(Job(position, v))
            continue
        try:
            packs.check_size(vault.store, v, sizes)
        except (LivedataError, OSError) as e:
            problems[position] = {"path": v.path, "object": v.object, "error": str(e)}
    outcomes, moved = _Engine(vault, progress, check_sizes=True).run(jobs)
    for job in moved:
        try:
            with open(os.devnull, "wb") as sink:
                read_version(vault, job.v, sink, progress)
        except (LivedataError, OSError) as e:
            outcomes[job.position] = e
    for job in jobs:
        outcome = outcomes.get(job.position)
        if isinstance(outcome, LivedataError | OSError):
            problems[job.position] = {"path": job.v.path, "object": job.v.object, "error": str(outcome)}
    return [problems[p] for p in sorted(problems)]
