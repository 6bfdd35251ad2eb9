"""The optional upload scan hook (``--scan-command``): a malware scanner fed each upload on stdin.

The command runs once per upload, without a shell (its argv split with
shlex), while the body arrives: each chunk is written to the scanner's stdin
as it is received, so the pipe's back-pressure bounds memory whatever the
size; stdin is closed at the end of the body and the exit status is the
verdict, taken before anything is committed: 0 clean, 1 infected, anything
else (or no progress within the timeout) a failed scan.  Any of the latter
two stores nothing.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
from collections.abc import AsyncIterator

import anyio
from anyio.abc import Process

from livedata_cli.errors import UsageError

REPORT_LIMIT = 2048  # bytes of the scanner's output kept for the error message and the log


class Infected(Exception):
    """The scanner exited 1: the upload holds something it flags."""

    def __init__(self, report: str) -> None:
        super().__init__(report or "flagged by the scanner")
        self.report = report


class ScanFailed(Exception):
    """The scanner could not give a verdict (another exit status, a crash, a timeout)."""


def scan_argv(command: str) -> list[str]:
    """The scanner's argv; a usage error (exit 2) when it is empty, unbalanced or not found."""
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise UsageError(f"--scan-command: {e}") from None
    if not argv:
        raise UsageError("--scan-command is empty")
    if shutil.which(argv[0]) is None:
        raise UsageError(f"--scan-command: {argv[0]!r} is not an executable file or on PATH")
    return argv


class Scan:
    """One running scanner: ``feed`` it the body, then ``finish`` for the verdict."""

    def __init__(self, process: Process, timeout: float) -> None:
        self._process = process
        self._timeout = timeout
        self._open = True  # the scanner may close its stdin early; then it has seen enough
        self._output = bytearray()
        self._drained = anyio.Event()

    async def _drain(self) -> None:
        """Read the scanner's output to its end (so it never blocks on it), keeping the start."""
        try:
            stream = self._process.stdout
            if stream is None:
                return
            async for chunk in stream:
                room = REPORT_LIMIT - len(self._output)
                if room > 0:
                    self._output += chunk[:room]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            self._drained.set()

    async def feed(self, chunk: bytes) -> None:
        stdin = self._process.stdin
        if not self._open or stdin is None:
            return
        try:
            with anyio.fail_after(self._timeout):
                await stdin.send(chunk)
        except TimeoutError:
            raise ScanFailed(f"the scanner read nothing for {self._timeout:g}s") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self._open = False

    def report(self) -> str:
        text = self._output.decode("utf-8", "replace")
        return " ".join(text.split())[:300]

    async def finish(self) -> None:
        """Close stdin and wait for the verdict; raises ``Infected`` or ``ScanFailed``."""
        if self._process.stdin is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await self._process.stdin.aclose()
        self._open = False
        try:
            with anyio.fail_after(self._timeout):
                status = await self._process.wait()
                await self._drained.wait()
        except TimeoutError:
            raise ScanFailed(f"the scanner gave no verdict within {self._timeout:g}s") from None
        if status == 1:
            raise Infected(self.report())
        if status != 0:
            detail = f": {self.report()}" if self.report() else ""
            raise ScanFailed(f"the scanner failed (exit status {status}){detail}")


@contextlib.asynccontextmanager
async def scanning(argv: list[str], timeout: float) -> AsyncIterator[Scan]:
    """Start the scanner; on leaving, kill it if it still runs (an aborted upload)."""
    try:
        process = await anyio.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as e:
        raise ScanFailed(f"the scanner did not start: {e.strerror or e}") from None
    scan = Scan(process, timeout)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scan._drain)
            try:
                yield scan
            finally:
                with anyio.CancelScope(shield=True):
                    if process.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            process.kill()
                    await process.wait()
                    await process.aclose()
    except BaseExceptionGroup as group:  # the upload's own error, as the caller expects it
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
