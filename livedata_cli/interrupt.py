"""Ctrl-C always ends the command: one line, exit 130, within a second or two.

The first SIGINT raises :class:`KeyboardInterrupt` in the main thread as
usual, so files, locks and temporary objects are cleaned up on the way out.
It also starts a watchdog: should the way out block (a thread waiting on a
worker process, a pool joining at exit), the watchdog prints the line, if
nobody did, and ends the process with 130 after :data:`GRACE` seconds.  The
worker processes die with it (``PR_SET_PDEATHSIG``); whatever a killed
command left in the store is what ``kill -9`` leaves, and ``prune`` clears it.
Local temporary files are another matter: a download's ``.part`` holds
plaintext, so each one is known here (:func:`temporary`) until it is renamed,
and whichever way an interrupted command ends, it removes those left.
A SIGINT once the command is done (the summary printed, the audit trail
being written) ends it the same way, never with a traceback; one that comes
while Python tears itself down is dropped (:func:`_ending`).
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

GRACE = 1.5
LINE = b"livedata: error: interrupted\n"

_state = {"interrupted": False, "said": False, "swallowed": False, "ending": False}
_lock = threading.Lock()
_temporaries: set[Path] = set()


def temporary(path: Path) -> None:
    """``path`` is about to be created and written: removed should the command be
    interrupted before :func:`kept` (a set's add: cheap enough for every file
    of a restore)."""
    _temporaries.add(path)


def kept(path: Path) -> None:
    """``path`` was renamed into place or removed: no longer ours to clean up."""
    _temporaries.discard(path)


def _remove_temporaries() -> None:
    for path in list(_temporaries):
        with contextlib.suppress(OSError):
            os.unlink(path)
    _temporaries.clear()


def said() -> None:
    """The interrupted line went out (by the normal error path)."""
    _state["said"] = True


def was_interrupted() -> bool:
    return _state["interrupted"]


def was_said() -> bool:
    return _state["said"]


def _hard_exit() -> None:
    _remove_temporaries()  # the way out blocked before its own cleanup ran
    with _lock:
        if not _state["said"]:
            _state["said"] = True
            os.write(2, LINE)
    os._exit(130)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _state["interrupted"]:
        if _state["swallowed"]:  # the first one landed where it could not be raised
            _state["swallowed"] = False
            raise KeyboardInterrupt
        return  # the watchdog is running; a second Ctrl-C changes nothing
    _state["interrupted"] = True
    timer = threading.Timer(GRACE, _hard_exit)
    timer.daemon = True
    timer.start()
    raise KeyboardInterrupt


def _raise_again() -> None:
    while _state["swallowed"]:
        time.sleep(0.02)  # let the hook return first, or the signal lands in it
        if _state["swallowed"]:
            _thread.interrupt_main()


def _on_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """A KeyboardInterrupt raised inside a callback Python cannot raise out of (a
    weakref callback of the import system, a ``__del__``) is not printed as
    "Exception ignored": it is raised again once the main thread is back in its
    own code.  The hook does no more than start that (a plain thread, which does
    not wait to be started), so the signal cannot land in the hook itself."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        if not _state["swallowed"]:
            _state["swallowed"] = True
            _thread.start_new_thread(_raise_again, ())
        return
    sys.__unraisablehook__(unraisable)


def _ending() -> None:
    """The last exit handler: Python is about to reset its signal handlers to the
    default, and a Ctrl-C from here on would kill the finished command by signal.
    Blocked, it is dropped as the process exits with the command's code."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def install() -> None:
    """Called once by the console script (``livedata_cli.entry``) in the main thread;
    ``livedata_cli.cli.main`` called in-process leaves the caller's handlers alone."""
    _state.update(interrupted=False, said=False, swallowed=False)
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return  # started to ignore Ctrl-C (a background job of a script): so be it
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = _on_unraisable
    if not _state["ending"]:
        _state["ending"] = True
        atexit.register(_ending)  # the first registered runs last, once
    # A parent that had SIGINT blocked when it started us passed the mask on:
    # Ctrl-C would wait, pending, until the command ended on its own.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def finish(code: int) -> int:
    """The exit code once the command is done; a SIGINT from here on exits 130 at once."""
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, lambda s, f: _hard_exit())
    if _state["interrupted"]:
        _remove_temporaries()  # one created just before the interrupt, outside its writer's cleanup
        if not _state["said"]:
            _state["said"] = True
            sys.stderr.write(LINE.decode())
        return 130
    return code
