"""Exception classes, each carrying the exit code of DESIGN §6.

The CLI's ``main()`` maps any :class:`LivedataError` to its ``exit_code`` and
prints its message as one line on stderr; anything else is a bug (exit 1).
A class's docstring is its default message.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; the README and man page show this table."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    NOT_FOUND = 3
    AUTH = 4
    INTEGRITY = 5
    UNREACHABLE = 6
    REFUSED = 7
    PARTIAL = 8
    INTERRUPTED = 130


class LivedataError(Exception):
    """An error livedata expected and can explain in one line."""

    exit_code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(LivedataError):
    """Invalid usage."""

    exit_code = ExitCode.USAGE


class NotFound(LivedataError):
    """Not found."""

    exit_code = ExitCode.NOT_FOUND


class VaultNotFound(NotFound):
    """No vault here: run 'livedata init' first."""


class AuthError(LivedataError):
    """Authentication failed."""

    exit_code = ExitCode.AUTH


class WrongPassphrase(AuthError):
    """Wrong passphrase: no key slot of this vault opens with it."""


class NoPassphrase(AuthError):
    """The vault is locked and no passphrase is available."""


class IntegrityError(LivedataError):
    """Integrity check failed: the data is tampered, truncated or foreign."""

    exit_code = ExitCode.INTEGRITY


class StoreUnreachable(LivedataError):
    """The store cannot be reached."""

    exit_code = ExitCode.UNREACHABLE


class Refused(LivedataError):
    """Refused by a limit."""

    exit_code = ExitCode.REFUSED


class LockHeld(Refused):
    """Another livedata process holds the vault lock."""


class PartialFailure(LivedataError):
    """Some items failed; the rest succeeded."""

    exit_code = ExitCode.PARTIAL


class ConversionFailed(LivedataError):
    """The conversion failed; the source file is unchanged."""

    exit_code = ExitCode.UNEXPECTED


# -- the particular errors, by exit code --------------------------------------------
# 2: usage
class ConfigError(UsageError):
    """The config file is not valid."""


class IndexReadOnly(UsageError):
    """The local index is read-only here: this command needs to write it."""


QUERY_HINT = 'words, "a phrase", prefix*, a OR b, -word, tag:word'


class QueryError(UsageError):
    """The search query cannot be understood."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"bad search query: {problem} (syntax: {QUERY_HINT})")


# 4: authentication
class LoginRequired(AuthError):
    """Not logged in to this server: run 'livedata login'."""


class WrongFilePassword(AuthError):
    """The server's lock refused the verifier: a wrong file password."""


class ShareKeyError(AuthError):
    """The key (or password) does not open this share."""


class IndexLocked(AuthError):
    """The local index is encrypted ('livedata lock --index'): this needs the vault key."""


# 5: integrity
class IndexDamaged(IntegrityError):
    """The local index is damaged."""


# 7: refused by a limit
class QuotaFull(Refused):
    """The account's storage quota is full."""


class NoSpace(Refused):
    """No space left."""


class LockLost(LockHeld):
    """This command's lock in the store went stale and was cleared by another command."""


# 1: never reaches the user (a batch reports the item as skipped)
class Skipped(LivedataError):
    """Skipped: not something livedata stores (a socket, FIFO or device)."""
