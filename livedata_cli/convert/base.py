"""The engine interface, the registry, and what every engine shares.

An engine turns one plaintext file into another format.  Plaintext lives only
in a private working folder (mode 0700, see :func:`private_workdir`), which
the caller removes on success, failure and Ctrl-C.  External tools run in
their own session with a minimal environment (no ``LIVEDATA_*`` variable, so
never a passphrase), ``HOME`` and ``TMPDIR`` inside the working folder, and
are killed, with everything they started, after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from livedata_cli import locking
from livedata_cli.errors import ConversionFailed, UsageError

Progress = Callable[[float], None]  # a fraction from 0 to 1

DEFAULT_TIMEOUT = 300.0
WORKDIR_PREFIX = "livedata-convert-"
# Format names are file extensions; these are the same format.
ALIASES = {"jpeg": "jpg", "tif": "tiff", "markdown": "md", "htm": "html", "text": "txt", "oga": "ogg"}


def norm_format(name: str) -> str:
    """A format as livedata names it: the lowercase extension, without dot or alias."""
    fmt = name.strip().lower().lstrip(".")
    return ALIASES.get(fmt, fmt)


def format_of(path: str) -> str:
    """The format of a vault or local path, from its extension ('' when it has none)."""
    name = path.rsplit("/", 1)[-1]
    return norm_format(name.rsplit(".", 1)[1]) if "." in name.strip(".") else ""


def _noop(_fraction: float) -> None:
    pass


@dataclass
class Request:
    """One conversion: ``src`` (format ``src_fmt``) into ``dst`` (format ``dst_fmt``)."""

    src: Path
    dst: Path
    src_fmt: str
    dst_fmt: str
    workdir: Path
    timeout: float = DEFAULT_TIMEOUT
    quality: int | None = None
    keep_metadata: bool = False
    title: str = ""  # the result's name without extension, for formats that carry one
    progress: Progress = field(default=_noop)


class Engine(ABC):
    """A converter found at run time: what it reads and writes, and how."""

    name: str = ""
    local: bool = True  # False: plaintext leaves this machine (never picked automatically)
    hint: str = ""  # how to install it, for 'convert formats'

    @abstractmethod
    def available(self) -> bool:
        """Whether this machine has the engine."""

    @abstractmethod
    def conversions(self) -> dict[str, set[str]]:
        """For each input format, the output formats; computed from what is installed."""

    @abstractmethod
    def convert(self, req: Request) -> None:
        """Write ``req.dst`` from ``req.src``, or raise :class:`ConversionFailed`."""

    def version(self) -> str:
        return ""

    def can(self, src: str, dst: str) -> bool:
        return dst in self.conversions().get(src, set())


# -- the registry --------------------------------------------------------------
def all_engines() -> list[Engine]:
    """Every engine livedata knows, in order of preference (found or not)."""
    from livedata_cli.convert.cloudconvert import CloudConvert
    from livedata_cli.convert.ffmpeg import Ffmpeg
    from livedata_cli.convert.images import Pillow
    from livedata_cli.convert.libreoffice import LibreOffice
    from livedata_cli.convert.pandoc import Pandoc

    return [Pillow(), LibreOffice(), Pandoc(), Ffmpeg(), CloudConvert()]


_ENGINES: list[Engine] | None = None
_LOCK = threading.Lock()


def engines() -> list[Engine]:
    """The engines present on this machine (looked for once per process)."""
    global _ENGINES
    with _LOCK:
        if _ENGINES is None:
            _ENGINES = [e for e in all_engines() if e.available()]
        return list(_ENGINES)


def engine_names() -> list[str]:
    return [e.name for e in all_engines()]


@dataclass(frozen=True)
class Step:
    engine: Engine
    src: str
    dst: str


def route(src: str, dst: str, engine: str | None = None) -> list[Step]:
    """The engine steps that turn ``src`` into ``dst``: one engine, or two local
    engines through an intermediate format (Markdown → ODT → PDF).  Remote
    engines are used only when named."""
    if not src:
        raise UsageError("the file has no extension: livedata cannot tell its format")
    if src == dst:
        raise UsageError(f"the file is already {dst}")
    known = set(engine_names())
    if engine is not None and engine not in known:
        raise UsageError(f"--engine: unknown engine {engine!r} (known: {', '.join(sorted(known))})")
    found = engines()
    if engine is not None:
        chosen = next((e for e in found if e.name == engine), None)
        if chosen is None:
            from livedata_cli.convert.cloudconvert import CloudConvert

            if engine == CloudConvert.name:
                raise UsageError(
                    "--engine cloudconvert needs an API key in LIVEDATA_CLOUDCONVERT_KEY"
                )
            hint = next((e.hint for e in all_engines() if e.name == engine), "")
            raise UsageError(f"the {engine} engine is not installed on this machine" + (f" ({hint})" if hint else ""))
        if not chosen.can(src, dst):
            raise UsageError(f"{engine} cannot convert {src} to {dst} (see 'livedata convert formats')")
        return [Step(chosen, src, dst)]
    local = [e for e in found if e.local]
    for e in local:
        if e.can(src, dst):
            return [Step(e, src, dst)]
    for first in local:
        for mid in sorted(first.conversions().get(src, set())):
            second = next((e for e in local if e is not first and e.can(mid, dst)), None)
            if second is not None:
                return [Step(first, src, mid), Step(second, mid, dst)]
    names = {e.name for e in found}
    absent = [f"{e.name}: {e.hint}" for e in all_engines() if e.name not in names and e.hint and e.local]
    raise UsageError(
        f"no engine on this machine converts {src} to {dst} (see 'livedata convert formats')"
        + (f"; not installed here: {'; '.join(absent)}" if absent else "")
    )


def table() -> list[dict[str, object]]:
    """What this machine converts: one entry per engine found, with its pairs."""
    out: list[dict[str, object]] = []
    for e in engines():
        pairs = e.conversions()
        out.append(
            {
                "engine": e.name,
                "version": e.version(),
                "local": e.local,
                "conversions": {src: sorted(dsts) for src, dsts in sorted(pairs.items())},
            }
        )
    return out


def missing() -> list[dict[str, str]]:
    """The engines not found, with how to get each."""
    present = {e.name for e in engines()}
    return [{"engine": e.name, "hint": e.hint} for e in all_engines() if e.name not in present]


# -- the private working folder ----------------------------------------------------
@contextlib.contextmanager
def private_workdir() -> Iterator[Path]:
    """A fresh folder only this user can open, removed however the block ends.

    Its name carries this process id, so a later run can remove what a killed
    one (kill -9) left behind: see :func:`sweep_stale`.
    """
    sweep_stale()
    path = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale() -> int:
    """Remove working folders of this user whose process is gone; returns how many."""
    root = Path(tempfile.gettempdir())
    removed = 0
    try:
        entries = list(root.glob(f"{WORKDIR_PREFIX}*"))
    except OSError:
        return 0
    for path in entries:
        m = re.match(rf"{WORKDIR_PREFIX}(\d+)-", path.name)
        if m is None:
            continue
        try:
            if path.lstat().st_uid != os.getuid() or not path.is_dir():
                continue
        except OSError:
            continue
        if not locking.process_alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


    return True


# -- running a tool ------------------------------------------------------------------
def tool_env(workdir: Path) -> dict[str, str]:
    """The environment of an engine process: nothing secret, temporary files in ``workdir``."""
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True, mode=0o700)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "TMPDIR": str(tmp), "LC_ALL": "C.UTF-8"}
    return env


def run_tool(
    argv: list[str],
    *,
    name: str,
    workdir: Path,
    timeout: float,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run an engine command; returns its stdout (when ``on_line`` is None).

    The command runs in its own session (so a timeout kills everything it
    started) and, where ``setpriv`` exists, dies with this process even on
    kill -9.  A non-zero exit or a timeout raises :class:`ConversionFailed`
    with the tool's stderr summarised on one line.
    """
    setpriv = shutil.which("setpriv")
    full = [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)
    err_path = workdir / f".{name}-stderr"
    with open(err_path, "w+b") as err:
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=workdir,
                env=env or tool_env(workdir),
                start_new_session=True,
            )
        except OSError as e:
            raise ConversionFailed(f"{name} could not start: {e.strerror or e}") from None
        chunks: list[bytes] = []
        assert proc.stdout is not None
        stdout = proc.stdout

        def reader() -> None:
            for raw in stdout:
                if on_line is not None:
                    with contextlib.suppress(Exception):
                        on_line(raw.decode(errors="replace").rstrip("\n"))
                else:
                    chunks.append(raw)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ConversionFailed(f"{name} took longer than {timeout:g} s and was stopped (--timeout)") from None
        except BaseException:  # Ctrl-C: stop the tool before the folder goes
            _kill_group(proc)
            raise
        finally:
            t.join(timeout=5)
            stdout.close()
        if code != 0:
            err.seek(0)
            raise ConversionFailed(f"{name} failed (exit {code}): {summarise(err.read())}")
    return b"".join(chunks).decode(errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def summarise(stderr: bytes, limit: int = 300) -> str:
    """A tool's stderr on one line: its meaningful lines, the last ones kept."""
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln and not ln.lower().startswith("warning: failed to launch javaldx")]
    text = " / ".join(lines) or "no message"
    return text if len(text) <= limit else "…" + text[-limit:]


def deadline_sleep(until: float, seconds: float) -> None:
    time.sleep(max(0.0, min(seconds, until - time.monotonic())))
