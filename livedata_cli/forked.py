"""Pools of forked worker processes, for the Python work done per small file.

Python runs one thread at a time, and a backup or a restore of many small
files is mostly Python work per file. Forked workers inherit the loaded
modules and the keys they need (never sent through a pipe), and die with
the command: a killed backup or restore must not leave workers behind.
The pool is started (every worker forked) by :func:`start`, before the
caller starts threads of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1  # Linux prctl(2)


def start(
    workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, each forked now, bound to die with this
    one, and then set up by ``initializer(*initargs)``."""
    import multiprocessing  # here: multiprocessing costs tens of milliseconds to import
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(os.getpid(), initializer, initargs),
    )
    pool.submit(int)  # forks every worker now (a fork pool starts them all at its first task)
    return pool


def _start_worker(parent: int, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    # Ctrl-C on a terminal reaches the whole process group: the command ends
    # the workers; their own KeyboardInterrupt would only print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
    initializer(*initargs)


# How long an ended command waits for the tasks its workers are running.
STOP_WAIT = 2.0


def stop(pool: ProcessPoolExecutor, *, finished: bool) -> None:
    """Wait for the workers when all their work was taken back (``finished``).
    Otherwise (an error, Ctrl-C) nothing queued starts, and the tasks running
    (a chunk of small files each) end first: the pool's own thread keeps taking
    their results, so they never block on a full pipe.  A worker killed while
    it hands back a result would leave that thread waiting for the rest of it,
    and the command hanging at exit; so a worker is killed only when its task
    has not ended in ``STOP_WAIT`` seconds (a file system that hangs)."""
    if finished:
        pool.shutdown(wait=True, cancel_futures=True)
        return
    pool.shutdown(wait=False, cancel_futures=True)
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(STOP_WAIT)
        if not manager.is_alive():
            return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, AttributeError):
            proc.kill()
