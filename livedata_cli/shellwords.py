"""The words a shell's completion call passes (``COMP_WORDS``, ``COMP_CWORD``),
read one way by the fast path and by the full command tree."""

from __future__ import annotations

import os


def shell_words(shell: str) -> tuple[list[str], str]:
    """The words before the cursor (without the program) and the word being typed."""
    import shlex

    def split(text: str) -> list[str]:
        lex = shlex.shlex(text, posix=True)
        lex.whitespace_split = True
        lex.commenters = ""
        out: list[str] = []
        try:
            out.extend(lex)
        except ValueError:  # an open quote: keep what was read, and the rest as one word
            out.append(lex.token)
        return out

    words = split(os.environ.get("COMP_WORDS", ""))
    if shell == "fish":
        token = os.environ.get("COMP_CWORD", "")
        parts = split(token) if token else []
        incomplete = parts[0] if parts else ""
        args = words[1:]
        if incomplete and args and args[-1] == incomplete:
            args.pop()
        return args, incomplete
    cword = int(os.environ.get("COMP_CWORD", "0") or 0)
    return words[1:cword], words[cword] if 0 <= cword < len(words) else ""
