"""Users file (YAML) with PBKDF2-SHA256 password hashes and roles, and the asyncua user manager built on it.

File format::

    users:
      alice:
        password_hash: "pbkdf2_sha256$600000$<salt base64>$<hash base64>"
        role: operator      # operator: read + write setpoints and the grant; viewer: read only

Create a hash with ``python -m simulator hash-password`` (prompts, or reads stdin) or ``make_hash(password)``.
Plain-text passwords are refused when the file is loaded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from asyncua.crypto.permission_rules import User, UserRole

ROLES = ("viewer", "operator")
ANONYMOUS = "anonymous"
DEFAULT_ITERATIONS = 600_000  # OWASP 2023 recommendation for PBKDF2-HMAC-SHA256


class UsersFileError(ValueError):
    """The users file is malformed; the message names the user and the problem."""


def make_hash(password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"pbkdf2_sha256${iterations}${salt_b64}${digest_b64}"


def verify(password: str, encoded: str) -> bool:
    try:
        scheme, iterations, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt_b64), int(iterations))
        return hmac.compare_digest(digest, base64.b64decode(hash_b64))
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    role: str


def parse_users(data: Any) -> dict[str, Account]:
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise UsersFileError("users file must be a mapping with a 'users:' mapping of name -> {password_hash, role}")
    accounts: dict[str, Account] = {}
    for name, entry in data["users"].items():
        if not isinstance(name, str) or not name or name == ANONYMOUS:
            raise UsersFileError(f"invalid user name {name!r} ('{ANONYMOUS}' is reserved)")
        if not isinstance(entry, dict):
            raise UsersFileError(f"user {name!r}: expected a mapping with password_hash and role")
        unknown = sorted(set(entry) - {"password_hash", "role"})
        if unknown:
            raise UsersFileError(f"user {name!r}: unknown key(s) {unknown}; plain 'password' is not accepted, "
                                 "store a hash from `python -m simulator hash-password`")
        h, role = entry.get("password_hash"), entry.get("role", "viewer")
        if not isinstance(h, str) or not h.startswith("pbkdf2_sha256$") or h.count("$") != 3:
            raise UsersFileError(f"user {name!r}: password_hash must be 'pbkdf2_sha256$iterations$salt$hash' "
                                 "(create it with `python -m simulator hash-password`)")
        if role not in ROLES:
            raise UsersFileError(f"user {name!r}: role must be one of {ROLES}, got {role!r}")
        accounts[name] = Account(name, h, role)
    return accounts


def load_users(path: str | Path) -> dict[str, Account]:
    p = Path(path)
    if not p.is_file():
        raise UsersFileError(f"users file {p} does not exist")
    try:
        return parse_users(yaml.safe_load(p.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise UsersFileError(f"{p} is not valid YAML: {exc}") from exc


def default_users(data_dir: Path) -> tuple[dict[str, Account], Path]:
    """With no --users: an ``operator`` account whose random password lives in ``data_dir/operator-password``
    (mode 0600, created on first start and reused), so a local `make run` can write setpoints without a shared
    default password."""
    secret = data_dir / "operator-password"
    if not secret.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(12) + "\n")
    password = secret.read_text().strip()
    return {"operator": Account("operator", make_hash(password, iterations=50_000), "operator")}, secret


class LineUserManager:
    """asyncua user manager: every authenticated session is a UserRole.User; our role lives in ``roles``."""

    def __init__(self, accounts: dict[str, Account], allow_anonymous: bool) -> None:
        self.accounts = accounts
        self.allow_anonymous = allow_anonymous
        self._verified: dict[tuple[str, str], bool] = {}

    def role(self, user: User | None) -> str:
        if user is None or user.name is None:
            return "viewer"
        if user.role == UserRole.Admin:
            return "operator"
        acct = self.accounts.get(user.name)
        return acct.role if acct else "viewer"

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None:
            return User(role=UserRole.User, name=ANONYMOUS) if self.allow_anonymous else None
        acct = self.accounts.get(username)
        if acct is None or password is None:
            return None
        key = (username, hashlib.sha256(password.encode("utf-8") + acct.password_hash.encode()).hexdigest())
        ok = self._verified.get(key)
        if ok is None:  # PBKDF2 is slow on purpose; remember the outcome for this process only
            ok = verify(password, acct.password_hash)
            self._verified[key] = ok
        return User(role=UserRole.User, name=username) if ok else None
