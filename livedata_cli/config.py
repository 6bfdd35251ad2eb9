"""Where livedata keeps its files, and the per-home vault settings.

One function, :func:`home`, decides where everything lives: ``LIVEDATA_HOME``
when set (tests and CI use it), else the platform's data directory.  The home
holds ``vault.json`` (which store this machine uses), the SQLite index, and the
default local store.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from livedata_cli.errors import VaultNotFound
from livedata_cli.profiles import active_home, base_home

VAULT_FILE = "vault.json"
INDEX_FILE = "index.sqlite"


def home() -> Path:
    """The folder that holds this machine's livedata state: the chosen profile's
    home (see :mod:`livedata_cli.profiles`), else the base home."""
    return active_home() or base_home()


def ensure_home() -> Path:
    """Create the home, private to this user: the index in it holds file names."""
    path = home()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def default_store_path() -> Path:
    return home() / "store"


def env_flag(name: str) -> bool:
    """True when an environment variable is set to a true-ish value."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class VaultSettings:
    """What this machine remembers about its vault (no secrets)."""

    store: str
    vault_id: str
    # S3/KMS: the endpoint (AWS_ENDPOINT_URL) and region in force at init, so
    # later commands reach the same service without the variables set.
    endpoint_url: str | None = None
    region: str | None = None

    def save(self) -> None:
        path = ensure_home() / VAULT_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @staticmethod
    def load() -> VaultSettings:
        path = home() / VAULT_FILE
        try:
            data = json.loads(path.read_text())
            return VaultSettings(
                store=str(data["store"]),
                vault_id=str(data["vault_id"]),
                endpoint_url=data.get("endpoint_url") or None,
                region=data.get("region") or None,
            )
        except FileNotFoundError:
            raise VaultNotFound(f"no vault set up in {home()}: run 'livedata init' first") from None
        except (ValueError, KeyError, TypeError):
            raise VaultNotFound(f"{path} is damaged: run 'livedata init --store URL' again") from None

    @staticmethod
    def exists() -> bool:
        return (home() / VAULT_FILE).exists()

    @staticmethod
    def for_store(store: str, vault_id: str) -> VaultSettings:
        """Settings for a vault set up now: with the AWS endpoint and region of
        the environment, when set."""
        return VaultSettings(
            store=store,
            vault_id=vault_id,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        )
