"""Credentials: argon2id password hashes, TOTP second factors (RFC 6238),
keyed look-up hashes of logins and throttle keys, and the secrets handed out
(one-time passwords, refresh tokens).

Nothing here is logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from masar.platform.crypto import Keyring, process_keyring

TOTP_ISSUER = "Masar"
TOTP_PERIOD = 30
# Accept the code of the step before and after the current one (clock drift).
TOTP_DRIFT_STEPS = 1

_INDEX_INFO = b"masar.network.login-index.v1"
_THROTTLE_INFO = b"masar.network.throttle-key.v1"


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


class LookupHashes:
    """Keyed hashes (HMAC-SHA256 under keys derived from the key ring), so
    the database can find an account by login without holding the login in
    clear. Every key of the ring is tried, so rotating keys loses nothing."""

    def __init__(self, keyring: Callable[[], Keyring] = process_keyring) -> None:
        self._keyring = keyring

    def _digest(self, key: bytes, info: bytes, value: str) -> str:
        return hmac.new(_derive(key, info), value.encode(), hashlib.sha256).hexdigest()

    def login_index(self, login: str) -> tuple[str, str]:
        """(key id, digest) under the active key: what a new account stores."""
        ring = self._keyring()
        return ring.active_id, self._digest(ring.keys[ring.active_id], _INDEX_INFO, login)

    def login_candidates(self, login: str) -> list[str]:
        """The digests of `login` under every key still in the ring."""
        ring = self._keyring()
        return [self._digest(key, _INDEX_INFO, login) for key in ring.keys.values()]

    def throttle_key(self, kind: str, value: str) -> str:
        ring = self._keyring()
        digest = self._digest(ring.keys[ring.active_id], _THROTTLE_INFO, f"{kind}:{value}")
        return f"{kind}:{digest[:64]}"


class Passwords:
    """argon2id hashing. `verify_or_dummy` costs the same whether or not
    there is an account, so timing does not tell that an account exists."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify_or_dummy(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerificationError, InvalidHashError):
            return False


def one_time_password() -> str:
    """A first or reset password to hand to the person (about 96 bits)."""
    return secrets.token_urlsafe(12)


# --- TOTP ----------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret, interval=TOTP_PERIOD).provisioning_uri(
        name=username, issuer_name=TOTP_ISSUER
    )


def totp_step(moment: datetime) -> int:
    return int(moment.timestamp()) // TOTP_PERIOD


def accepted_totp_step(
    secret: str, code: str, *, now: datetime, last_step: int | None
) -> int | None:
    """The time step whose code `code` is, within the allowed drift and later
    than the last accepted one (a code is never accepted twice); None if none."""
    if not code:
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_PERIOD)
    current = totp_step(now)
    found = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        # Every candidate is compared, so the time taken does not depend on which matched.
        if hmac.compare_digest(totp.generate_otp(step), code) and found is None:
            found = step
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


def totp_code(secret: str, moment: datetime) -> str:
    """The code an authenticator app shows at `moment` (seed data, tests)."""
    return pyotp.TOTP(secret, interval=TOTP_PERIOD).generate_otp(totp_step(moment))


# --- refresh tokens ------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshToken:
    """`<session id>.<secret>`: the session is found by id, the secret compared by hash."""

    session_id: str
    secret: str

    def __str__(self) -> str:
        return f"{self.session_id}.{self.secret}"

    @property
    def secret_hash(self) -> str:
        return secret_hash(self.secret)

    @classmethod
    def new(cls, session_id: str | None = None) -> RefreshToken:
        return cls(session_id or f"ses-{secrets.token_hex(12)}", secrets.token_urlsafe(32))

    @classmethod
    def parse(cls, text: str) -> RefreshToken | None:
        session_id, dot, secret = text.strip().partition(".")
        if not dot or not session_id.startswith("ses-") or len(text) > 200 or not secret:
            return None
        return cls(session_id, secret)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
