"""File names are bytes: how a local name becomes a vault path and back, exactly.

POSIX file names are byte strings; Python hands them over as ``str`` decoded
with ``surrogateescape`` (a byte that is not UTF-8 becomes a lone surrogate
U+DC80..U+DCFF).  Lone surrogates cannot be written as UTF-8, so they must
never reach a journal, the index or a JSON document.  A vault path keeps each
such byte as the noncharacter U+FDD0 followed by the byte in two lowercase hex
digits (``bad-\\xff.txt`` is stored as ``"bad-\\ufdd0ff.txt"``); a U+FDD0 in a
valid name is written as the escapes of its own three UTF-8 bytes, so the
mapping is one-to-one and a download writes the very bytes that were uploaded.
Names that are valid UTF-8 without U+FDD0 (all names in practice) are
unchanged.

For people, :func:`shown` renders a name with undecodable bytes as ``\\xNN``
and every control character escaped, so no name can move the cursor, retitle
the terminal or forge a line of output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from itertools import islice

MARK = "\ufdd0"
# A stored byte: the mark and the byte's two hex digits (only bytes >= 0x80 are stored so).
_ESCAPE = re.compile("\ufdd0([89a-f][0-9a-f])")
_NEEDS_WORK = re.compile("[\udc80-\udcff\ufdd0]")
# C0 and C1 controls, DEL, and the line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def from_local(name: str) -> str:
    """The vault form of a name read from the file system (``os.scandir``,
    ``os.readlink``): every undecodable byte and every U+FDD0 escaped."""
    if not _NEEDS_WORK.search(name):
        return name
    out: list[str] = []
    for ch in name:
        if "\udc80" <= ch <= "\udcff":
            out.append(f"{MARK}{ord(ch) - 0xDC00:02x}")
        elif ch == MARK:
            out.append("".join(f"{MARK}{b:02x}" for b in MARK.encode()))
        else:
            out.append(ch)
    return "".join(out)


def from_argument(text: str) -> str:
    """The vault form of a path typed by a user (``sys.argv``, also
    ``surrogateescape``-decoded): undecodable bytes escaped; escapes already
    there are kept, so a vault path passes through unchanged."""
    if not _NEEDS_WORK.search(text):
        return text
    return re.sub("[\udc80-\udcff]", lambda m: f"{MARK}{ord(m.group()) - 0xDC00:02x}", text)


def to_bytes(path: str) -> bytes:
    """The exact bytes of a vault path (or of a local name with surrogates)."""
    if not _NEEDS_WORK.search(path):
        return path.encode("utf-8", "surrogateescape")
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(path):
        out += path[pos : m.start()].encode("utf-8", "surrogateescape")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += path[pos:].encode("utf-8", "surrogateescape")
    return bytes(out)


def to_local(path: str) -> str:
    """A vault path as the file system's ``str`` (``surrogateescape``), for ``os`` calls."""
    if not _NEEDS_WORK.search(path):
        return path
    return os.fsdecode(to_bytes(path))


def shown(name: str) -> str:
    """A vault path or local name for a terminal: bytes that are not UTF-8 as
    ``\\xNN``, control characters as ``\\n``, ``\\t``, ``\\xNN`` or ``\\uNNNN``."""
    if _NEEDS_WORK.search(name):
        name = to_bytes(name).decode("utf-8", "backslashreplace")
    if not _CONTROL.search(name):
        return name
    return _CONTROL.sub(_escape_control, name)


_TAG_QUOTED = re.compile(r"[\s,'\"]")


def shown_tags(tags: Iterable[str]) -> str:
    """Tags for a terminal: comma-separated, a tag holding a separator, space
    or quote in quotes (``x,y`` never passes for two tags), every tag
    :func:`shown`; ``-`` for none."""
    return ",".join(shown(_quoted(t) if _TAG_QUOTED.search(t) or not t else t) for t in tags) or "-"


def _quoted(text: str) -> str:
    """``text`` in single quotes as a shell reads it (``shlex.quote`` leaves a comma bare)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def check_tags(tags: Iterable[str]) -> list[str]:
    """Tags as given, or :class:`UsageError`: a tag is not empty and holds no
    control character, nor a byte that is not UTF-8 (a surrogate escape)."""
    from livedata_cli.errors import UsageError

    tags = list(tags)
    for t in tags:
        if not t.strip() or _CONTROL.search(t) or _SURROGATE.search(t):
            raise UsageError(f"bad tag {shown(t)!r}: a tag is a word or words of text on one line")
    return tags


def unicode_text(text: str) -> str:
    """``text`` as valid Unicode, whatever it came from: a byte that is not UTF-8
    (a command-line argument's surrogate escape) as ``\\xNN``."""
    if not _SURROGATE.search(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no byte stands for
        return text.encode("utf-8", "backslashreplace").decode()


# A file's note is for a few lines of context, not a document.
NOTE_LIMIT = 64 * 1024


def check_note(text: str) -> str:
    """A note as given, or :class:`UsageError`: text (UTF-8), at most NOTE_LIMIT bytes."""
    from livedata_cli.errors import UsageError

    if _SURROGATE.search(text):
        raise UsageError("a note is text: it holds bytes that are not UTF-8")
    if len(text.encode()) > NOTE_LIMIT:
        raise UsageError(f"a note holds at most {NOTE_LIMIT // 1024} KiB")
    return text


# Any character that makes a listing line need :func:`shown` (the newline aside).
_LINE_WORK = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff\ufdd0]")


def shown_lines(names: Iterable[str], block: int = 2048) -> Iterator[str]:
    """``shown(name) + "\n"`` for many names, in blocks: a block whose names
    need no escaping (nearly all) is checked by one regex search and written
    as one string."""
    it = iter(names)
    while chunk := list(islice(it, block)):
        text = "\n".join(chunk) + "\n"
        if text.count("\n") == len(chunk) and not _LINE_WORK.search(text):
            yield text
        else:
            yield "".join(shown(n) + "\n" for n in chunk)


def for_json(name: str) -> str:
    """A vault path for a JSON document: valid Unicode; undecodable bytes as ``\\xNN``
    (JSON escapes control characters itself)."""
    if _NEEDS_WORK.search(name):
        return to_bytes(name).decode("utf-8", "backslashreplace")
    return name


def _escape_control(m: re.Match[str]) -> str:
    ch = m.group()
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
