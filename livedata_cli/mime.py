"""MIME type from content, not from the name: the first bytes of a file."""

from __future__ import annotations

_MAGIC: list[tuple[bytes, int, str]] = [
    (b"%PDF-", 0, "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"RIFF", 0, "application/x-riff"),
    (b"PK\x03\x04", 0, "application/zip"),
    (b"\x1f\x8b", 0, "application/gzip"),
    (b"BZh", 0, "application/x-bzip2"),
    (b"\xfd7zXZ\x00", 0, "application/x-xz"),
    (b"(\xb5/\xfd", 0, "application/zstd"),
    (b"7z\xbc\xaf\x27\x1c", 0, "application/x-7z-compressed"),
    (b"\x7fELF", 0, "application/x-executable"),
    (b"SQLite format 3\x00", 0, "application/vnd.sqlite3"),
    (b"ustar", 257, "application/x-tar"),
    (b"ID3", 0, "audio/mpeg"),
    (b"OggS", 0, "audio/ogg"),
    (b"fLaC", 0, "audio/flac"),
    (b"ftyp", 4, "video/mp4"),
    (b"\x1aE\xdf\xa3", 0, "video/webm"),
    (b"{\\rtf", 0, "application/rtf"),
    (b"%!PS", 0, "application/postscript"),
    (b"wOFF", 0, "font/woff"),
    (b"wOF2", 0, "font/woff2"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"\x00\x00\x01\x00", 0, "image/vnd.microsoft.icon"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "application/x-ole-storage"),
]

_RIFF = {b"WAVE": "audio/wav", b"WEBP": "image/webp", b"AVI ": "video/x-msvideo"}
_FTYP = {
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"avif": "image/avif",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4",
    b"3gp4": "video/3gpp",
}
_ZIP_KINDS = {
    b"word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    b"xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    b"ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}


def sniff(head: bytes) -> str:
    """Best MIME type for a file starting with ``head`` (a few KiB is enough)."""
    if not head:
        return "application/x-empty"
    for magic, offset, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if mime == "application/x-riff":
                return _RIFF.get(head[8:12], "application/octet-stream")
            if mime == "video/mp4":
                return _FTYP.get(head[8:12], mime)
            if mime == "application/zip":
                if head[30:38] == b"mimetype":
                    # ODF and EPUB name their own type first, uncompressed.
                    start = 38 + int.from_bytes(head[28:30], "little")
                    declared = head[start : start + 80].split(b"PK", 1)[0].decode("ascii", "replace")
                    if declared.startswith(("application/vnd.oasis.opendocument.", "application/epub+zip")):
                        return declared
                for marker, kind in _ZIP_KINDS.items():
                    if marker in head:
                        return kind
            return mime
    stripped = head.lstrip()[:256].lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    if stripped.startswith(b"<?xml"):
        return "image/svg+xml" if b"<svg" in head.lower() else "application/xml"
    if stripped.startswith((b"{", b"[")) and _is_text(head):
        return "application/json"
    if _is_text(head):
        return "text/plain"
    return "application/octet-stream"


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the end of the sample is still text.
        return e.start >= len(head) - 3


# Contents of these types can be indexed for search (--index-content).
TEXT_LIMIT = 64 * 1024
_TEXT_TYPES = ("application/json", "application/xml", "image/svg+xml", "application/rtf")


def is_text(mime: str | None) -> bool:
    """True for types whose bytes are words a person could search for."""
    return mime is not None and (mime.startswith("text/") or mime in _TEXT_TYPES)


def extract_text(head: bytes) -> str | None:
    """The searchable text of a file that starts with ``head``: its first
    TEXT_LIMIT bytes as UTF-8 (a character cut at the end is dropped), or None
    when they are not text."""
    head = head[:TEXT_LIMIT]
    if b"\x00" in head or not _is_text(head[:4096]):
        return None
    return head.decode("utf-8", errors="replace").rstrip("\ufffd")
