"""Where the core sends a line meant for the user's terminal: the core never
prints; the CLI points :data:`notice` at its stderr, the server at its log."""

from __future__ import annotations

from collections.abc import Callable


def _no_notice(_message: str) -> None:
    pass


notice: Callable[[str], None] = _no_notice
