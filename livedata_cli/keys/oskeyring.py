"""The OS keyring as a cache of unlocked keys (and of other small secrets:
server tokens, journal heads), when a real keyring is available."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from livedata_cli import settings
from livedata_cli.errors import UsageError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

KEYRING_SERVICE = "livedata"


class KeyCache:
    """The unlocked master key in the OS keyring, when a real one is available."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and not settings.env_flag("LIVEDATA_NO_KEYRING")
        self._backend: Any = None
        self.reason = "disabled by LIVEDATA_NO_KEYRING or --no-keyring" if not self.enabled else ""

    def backend(self) -> Any:
        """The keyring backend, or None (with ``reason`` saying why)."""
        if not self.enabled:
            return None
        if self._backend is None:
            try:
                import keyring
                import keyring.core

                kr = keyring.get_keyring()
                if not keyring.core.recommended(kr):
                    self.reason = f"no secure OS keyring ({type(kr).__name__} is not one)"
                    self.enabled = False
                    return None
                self._backend = kr
            except Exception as e:  # keyring raises many kinds on broken setups
                self.reason = f"the OS keyring is not usable ({type(e).__name__})"
                self.enabled = False
                return None
        return self._backend

    def get(self, vault_id: str) -> bytes | None:
        kr = self.backend()
        if kr is None:
            return None
        try:
            value = kr.get_password(KEYRING_SERVICE, vault_id)
        except Exception as e:
            self.reason = f"the OS keyring refused to read ({type(e).__name__})"
            return None
        try:
            return bytes.fromhex(value) if value else None
        except ValueError:
            return None

    def put(self, vault_id: str, master_key: bytes) -> bool:
        kr = self.backend()
        if kr is None:
            return False
        try:
            kr.set_password(KEYRING_SERVICE, vault_id, master_key.hex())
            return True
        except Exception as e:
            self.reason = f"the OS keyring refused to store the key ({type(e).__name__})"
            return False

    def delete(self, vault_id: str) -> bool:
        """Remove the cached key: True when one was cached, False when none was.
        A keyring that fails to delete it is an error, never "nothing was cached"."""
        kr = self.backend()
        if kr is None:
            return False
        from keyring.errors import PasswordDeleteError

        try:
            kr.delete_password(KEYRING_SERVICE, vault_id)
            return True
        except Exception as e:  # keyring raises many kinds on broken setups
            # PasswordDeleteError also stands for a refusal: "not found" only when nothing is there.
            if isinstance(e, PasswordDeleteError) and self._absent(kr, vault_id):
                return False
            raise UsageError(
                f"the OS keyring did not remove the cached key ({type(e).__name__}: {e}); it may still be cached"
            ) from None

    @staticmethod
    def _absent(kr: KeyringBackend, vault_id: str) -> bool:
        """Whether the keyring answers that it holds no key for this vault."""
        try:
            return kr.get_password(KEYRING_SERVICE, vault_id) is None
        except Exception:  # it cannot say: the key may still be there
            return False
