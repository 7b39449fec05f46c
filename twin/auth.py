"""Bearer tokens with three roles (viewer < operator < engineer), stored hashed.

Tokens are 256-bit random strings, so a single SHA-256 is the right hash at rest (the GitHub / PyPI token practice):
there is nothing to brute-force, and a slow KDF would only add latency to every request. The plaintext is shown once,
by ``python -m twin token create --role R --name N``; the file keeps name, role, hash and creation time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

TOKEN_PREFIX = "plt_"


class Role(IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    viewer = 1
    operator = 2
    engineer = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; choose one of {[r.name for r in cls]}") from None


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def allows(self, needed: Role) -> bool:
        return self.role >= needed


@dataclass
class _Entry:
    name: str
    role: str
    sha256: str
    created: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenStore:
    """A JSON file of hashed tokens; reloaded when it changes on disk, so tokens created by the CLI work at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._by_hash: dict[str, _Entry] = {}

    # -- persistence ------------------------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._by_hash, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        data = json.loads(self.path.read_text(encoding="utf-8"))
        entries = [_Entry(**e) for e in data.get("tokens", [])]
        self._by_hash = {e.sha256: e for e in entries}
        self._mtime = mtime

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        payload = {"tokens": [asdict(e) for e in self._by_hash.values()]}
        tmp.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._mtime = self.path.stat().st_mtime

    # -- operations -------------------------------------------------------------------------------------------------
    def create(self, role: Role | str, name: str) -> str:
        """Make a token and return its plaintext (the only time it exists outside the caller's hands)."""
        role = Role.parse(role) if isinstance(role, str) else role
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError("token name must be 1-64 characters of letters, digits, '-', '_' or '.'")
        with self._lock:
            self._load()
            if any(e.name == name for e in self._by_hash.values()):
                raise ValueError(f"a token named {name!r} exists; revoke it first or choose another name")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            entry = _Entry(name=name, role=role.name, sha256=hash_token(token),
                           created=datetime.now(UTC).isoformat(timespec="seconds"))
            self._by_hash[entry.sha256] = entry
            self._save()
        return token

    def revoke(self, name: str) -> bool:
        with self._lock:
            self._load()
            keep = {h: e for h, e in self._by_hash.items() if e.name != name}
            changed = len(keep) != len(self._by_hash)
            self._by_hash = keep
            if changed:
                self._save()
            return changed

    def list(self) -> list[dict[str, str]]:
        with self._lock:
            self._load()
            return [{"name": e.name, "role": e.role, "created": e.created} for e in self._by_hash.values()]

    def verify(self, token: str) -> Principal | None:
        """The principal a presented token belongs to, or None. Constant-time compare on the digest."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 256:
            return None
        digest = hash_token(token)
        with self._lock:
            self._load()
            for h, e in self._by_hash.items():
                if hmac.compare_digest(h, digest):
                    return Principal(name=e.name, role=Role.parse(e.role))
        return None
