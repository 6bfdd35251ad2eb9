"""Run one ``livedata`` command inside the calling process, as a child process would run it.

The command gets its own stdin, stdout and stderr (a pipe's buffering and
encoding), its own environment variables and working folder, and the
per-process state a fresh interpreter starts with (the CLI's ``Env``, the
chosen profile, the once-per-process notices, the boto3 session, the audit
recorder); everything is put back afterwards.  The test suite uses it to run
commands without paying an interpreter start each time; it is not for
commands that install signal handlers, wait on a terminal or fork on purpose,
nor for running two commands at once (the streams and the environment are
the process's own).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

# What CPython gives a child whose standard streams are pipes under a UTF-8 C locale.
_ENCODING = "utf-8"
_STDIO_ERRORS = "surrogateescape"
_STDERR_ERRORS = "backslashreplace"

_running = threading.Lock()


@dataclass
class Outcome:
    """What the command left: its exit code, the bytes of stdout, the text of stderr."""

    code: int
    stdout: bytes
    stderr: str


class _Sink(io.RawIOBase):
    """The write end of a pipe nobody reads until the command is over."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Buffer, /) -> int:
        view = memoryview(b)
        self.data += view
        return view.nbytes


def _streams(stdin: bytes) -> tuple[io.TextIOWrapper, io.TextIOWrapper, _Sink, io.TextIOWrapper, _Sink]:
    out_raw, err_raw = _Sink(), _Sink()
    stdin_s = io.TextIOWrapper(io.BufferedReader(io.BytesIO(stdin)), encoding=_ENCODING, errors=_STDIO_ERRORS)
    stdout_s = io.TextIOWrapper(io.BufferedWriter(out_raw), encoding=_ENCODING, errors=_STDIO_ERRORS)
    stderr_s = io.TextIOWrapper(
        io.BufferedWriter(err_raw), encoding=_ENCODING, errors=_STDERR_ERRORS, line_buffering=True
    )
    return stdin_s, stdout_s, out_raw, stderr_s, err_raw


# Module globals a fresh interpreter starts without: (module, attribute, its first value).
_PER_PROCESS: tuple[tuple[str, str, Callable[[ModuleType], object]], ...] = (
    ("livedata_cli.crypto.kdf", "_warned", lambda m: False),  # the weak-KDF notice: once per process
    ("livedata_cli.aws", "_session", lambda m: None),  # it keeps the credentials of the environment it saw
    ("livedata_cli.remote.tokens", "_log_in_again", lambda m: None),
    ("livedata_cli.netwait", "_notice", lambda m: None),
    ("livedata_cli.audit.recorder", "_current", lambda m: m.Recorder()),
    ("livedata_cli.packs", "_keys", lambda m: None),
    ("livedata_cli.keys.kms", "_providers", lambda m: {}),  # decrypted keys, cached for one command
    ("livedata_cli.envfail", "_places", lambda m: []),  # the folders this command named
    ("livedata_cli.notices", "notice", lambda m: m._no_notice),
    ("livedata_cli.vault.store_locking", "_paused", lambda m: set()),
    ("livedata_cli.convert.base", "_ENGINES", lambda m: None),  # found on this PATH
)


def fresh_process_state() -> None:
    """Forget what an earlier command left in module globals, as a new process would."""
    from livedata_cli import interrupt, settings

    interrupt._state.update(interrupted=False, said=False)
    settings.reset()
    for name, attribute, first in _PER_PROCESS:
        module = sys.modules.get(name)
        if module is not None:
            setattr(module, attribute, first(module))


@contextmanager
def _process(environ: Mapping[str, str], cwd: str | os.PathLike[str] | None) -> Iterator[None]:
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    os.environ.clear()
    os.environ.update(environ)
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


# What a command may change of how this process takes signals.  An ignored
# signal stays ignored in every child started later (exec keeps SIG_IGN), so
# a command that ignored SIGINT would leave later child processes deaf to Ctrl-C.
_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGPIPE", "SIGQUIT") if hasattr(signal, name)
)


@contextmanager
def _signals_kept() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            with contextlib.suppress(ValueError, TypeError):  # not the main thread; a handler from C
                signal.signal(sig, handler)


def run(
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Outcome:
    """Run ``livedata ARGV`` here and return what a child process would have returned."""
    from livedata_cli.cli import main

    stdin_s, stdout_s, out_raw, stderr_s, err_raw = _streams(stdin)
    with _running, _signals_kept():
        saved = sys.stdin, sys.stdout, sys.stderr
        with _process(os.environ if environ is None else environ, cwd):
            fresh_process_state()
            sys.stdin, sys.stdout, sys.stderr = stdin_s, stdout_s, stderr_s
            try:
                code = main(list(argv))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int | None):
                    stderr_s.write(f"{e.code}\n")
            except Exception:  # what the interpreter does with an uncaught exception
                import traceback

                traceback.print_exc(file=stderr_s)
                code = 1
            finally:
                for stream in (stdout_s, stderr_s):
                    with contextlib.suppress(ValueError):  # closed by the command
                        stream.flush()
                sys.stdin, sys.stdout, sys.stderr = saved
                fresh_process_state()
    return Outcome(int(code), bytes(out_raw.data), bytes(err_raw.data).decode(_ENCODING, _STDERR_ERRORS))
