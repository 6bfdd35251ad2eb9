"""Account emails: one spelling per address, and nothing a terminal would act on.

An email is normalised (Unicode NFKC, so full-width and other compatibility
forms become their plain letters; trimmed; lower-cased, the domain and the
local part alike, as accounts always were) before it is stored or looked
up.  A new account's email may not hold control or format characters
(escape sequences, zero-width joiners, bidirectional overrides), whitespace,
private-use or unassigned code points: those would show one address and
mean another, or reach the operator's terminal as commands.
"""

from __future__ import annotations

import unicodedata


def normalize(text: str) -> str:
    # NFKC again after lower(): lower-casing can leave a form NFKC would change (one spelling per address)
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).strip().lower())


def refusal(email: str) -> str | None:
    """Why a (normalised) email cannot name a new account, or None."""
    for ch in email:
        category = unicodedata.category(ch)
        if category[0] == "C" or category[0] == "Z" or ch.isspace():
            return f"the email holds a control, format or space character (U+{ord(ch):04X})"
    return None


def printable(text: str) -> str:
    """Text for a terminal: anything not printable shown as its escape (``\\x1b``), never sent raw."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
