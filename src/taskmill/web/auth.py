"""Who may use the dashboard: password hashes, API tokens, roles and CSRF tokens.

Only the standard library: passwords are hashed with scrypt (pbkdf2_sha256 hashes,
e.g. made by other tools, are accepted too). Create a hash with

    python -m taskmill.web.auth            # asks for the password twice, prints the hash

and put it in TASKMILL_DASHBOARD_PASSWORD_HASH.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import secrets
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from taskmill.errors import ConfigurationError

ENV_PASSWORD_HASH = "TASKMILL_DASHBOARD_PASSWORD_HASH"
ENV_USER = "TASKMILL_DASHBOARD_USER"
ENV_READONLY_PASSWORD_HASH = "TASKMILL_DASHBOARD_READONLY_PASSWORD_HASH"
ENV_READONLY_USER = "TASKMILL_DASHBOARD_READONLY_USER"
ENV_TOKEN = "TASKMILL_DASHBOARD_TOKEN"
ENV_READONLY_TOKEN = "TASKMILL_DASHBOARD_READONLY_TOKEN"
ENV_SECRET = "TASKMILL_DASHBOARD_SECRET"
ENV_HTTPS_ONLY = "TASKMILL_DASHBOARD_HTTPS_ONLY"

#: scrypt cost: 16 MiB of memory and about 50 ms a hash
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024

CSRF_SESSION_KEY = "csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class Role(StrEnum):
    READ_ONLY = "read-only"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user or API token holder."""

    name: str
    role: Role
    #: "session" (a logged-in browser, needs CSRF tokens) or "token" (a bearer token)
    via: str

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


# ------------------------------------------------------------------ passwords
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash`, salt and hash base64."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=SCRYPT_MAXMEM
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches a scrypt or pbkdf2_sha256 hash; False if malformed."""
    try:
        scheme, *fields = encoded.strip().split("$")
        if scheme == "scrypt" and len(fields) == 5:
            n, r, p = (int(x) for x in fields[:3])
            salt, expected = base64.b64decode(fields[3]), base64.b64decode(fields[4])
            actual = hashlib.scrypt(
                password.encode(),
                salt=salt,
                n=n,
                r=r,
                p=p,
                maxmem=SCRYPT_MAXMEM,
                dklen=len(expected),
            )
        elif scheme == "pbkdf2_sha256" and len(fields) == 3:
            salt_text, expected = fields[1], base64.b64decode(fields[2])
            actual = hashlib.pbkdf2_hmac(
                "sha256", password.encode(), salt_text.encode(), int(fields[0]), len(expected)
            )
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


#: checked against when the user name is unknown, so timing does not reveal names
_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'0' * 16)}${_b64(b'0' * 64)}"


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True, slots=True)
class Account:
    password_hash: str
    role: Role


@dataclass
class AuthConfig:
    """Accounts and tokens the dashboard accepts; at least one of them is required."""

    accounts: Mapping[str, Account] = field(default_factory=dict)
    #: bearer token -> role (for the API, /metrics and scripts)
    tokens: Mapping[str, Role] = field(default_factory=dict)
    #: signs the session cookie; a random one means logins end when the process does
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: mark the session cookie Secure (set when the dashboard is served over HTTPS)
    https_only: bool = False

    def __post_init__(self) -> None:
        if not self.accounts and not self.tokens:
            raise ConfigurationError(
                "the dashboard needs a login: set TASKMILL_DASHBOARD_PASSWORD_HASH "
                "(python -m taskmill.web.auth makes one) or TASKMILL_DASHBOARD_TOKEN"
            )
        for token in self.tokens:
            if len(token) < 16:
                raise ConfigurationError("a dashboard token must have at least 16 characters")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthConfig:
        env = os.environ if environ is None else environ
        accounts: dict[str, Account] = {}
        if env.get(ENV_PASSWORD_HASH):
            accounts[env.get(ENV_USER) or "admin"] = Account(env[ENV_PASSWORD_HASH], Role.ADMIN)
        if env.get(ENV_READONLY_PASSWORD_HASH):
            name = env.get(ENV_READONLY_USER) or "viewer"
            accounts[name] = Account(env[ENV_READONLY_PASSWORD_HASH], Role.READ_ONLY)
        tokens: dict[str, Role] = {}
        if env.get(ENV_TOKEN):
            tokens[env[ENV_TOKEN]] = Role.ADMIN
        if env.get(ENV_READONLY_TOKEN):
            tokens[env[ENV_READONLY_TOKEN]] = Role.READ_ONLY
        extra: dict[str, Any] = {}
        if env.get(ENV_SECRET):
            extra["secret_key"] = env[ENV_SECRET]
        https_only = env.get(ENV_HTTPS_ONLY, "").lower() in ("1", "true", "yes")
        return cls(accounts=accounts, tokens=tokens, https_only=https_only, **extra)

    def check_password(self, username: str, password: str) -> Principal | None:
        account = self.accounts.get(username)
        ok = verify_password(password, account.password_hash if account else _DUMMY_HASH)
        if account is None or not ok:
            return None
        return Principal(name=username, role=account.role, via="session")

    def check_token(self, authorization: str | None) -> Principal | None:
        """The principal of an `Authorization: Bearer <token>` header, if valid."""
        if not authorization:
            return None
        scheme, _, supplied = authorization.partition(" ")
        if scheme.lower() != "bearer" or not supplied.strip():
            return None
        found: Role | None = None
        for token, role in self.tokens.items():
            if hmac.compare_digest(token.encode(), supplied.strip().encode()):
                found = role
        if found is None:
            return None
        return Principal(name=f"token:{found.value}", role=found, via="token")


# ------------------------------------------------------------------------ CSRF
def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, made on first use."""
    token = session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_SESSION_KEY] = token
    return token


def csrf_valid(session: Mapping[str, Any], supplied: str | None) -> bool:
    expected = session.get(CSRF_SESSION_KEY)
    if not isinstance(expected, str) or not expected or not supplied:
        return False
    return hmac.compare_digest(expected.encode(), supplied.encode())


# ------------------------------------------------------------- login throttling
class LoginThrottle:
    """At most `attempts` failed logins per client address in `window` seconds."""

    def __init__(self, attempts: int = 10, window: float = 60.0) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> list[float]:
        return [t for t in self._failures.get(client, []) if now - t < self.window]

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, time.monotonic())) >= self.attempts

    def failed(self, client: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._failures[client] = [*self._recent(client, now), now]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def main() -> None:
    """Ask for a password and print its hash for TASKMILL_DASHBOARD_PASSWORD_HASH."""
    password = getpass.getpass("Dashboard password: ")
    if password != getpass.getpass("Again: "):
        sys.exit("the passwords differ")
    if len(password) < 8:
        sys.exit("use at least 8 characters")
    print(hash_password(password))


if __name__ == "__main__":
    main()
