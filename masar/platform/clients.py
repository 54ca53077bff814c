"""Clients of the identity provider: how a process proves who it is to the
network service to get a token, without holding the token-signing key.

A client (a service, for its service identity; the local stack's bootstrap
client "cli") holds an Ed25519 *client key* of its own. To get a token it
signs a short *client assertion* — a document of type `masar-client`
naming itself (`sub`), the network service (`aud`), when (`iat`, `exp`:
at most five minutes) and a unique id (`jti`) — and sends it to
`IdentityService.IssueClientToken`. The network service verifies it
against the public keys of the clients it trusts (`ClientRegistry`),
refuses a replayed one, and issues a token within what the client may ask:
a service only its own identity (service:<name>), the bootstrap client any
role and scope (the local stack only: a deployment trusts no bootstrap
client unless its operators name one).

Keys (masar.platform.settings.KeySettings): MASAR_CLIENT_KEY (base64 of the
private key), else $MASAR_DATA_DIR/keys/<holder>/client.json with its public
half in $MASAR_DATA_DIR/keys/public/clients/<holder>.json; the network
service trusts MASAR_NETWORK_CLIENT_KEYS ("name:BASE64PUBLICKEY,...", a name
may appear twice while its key rotates), else the files in
keys/public/clients/.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from masar.platform import keyfiles
from masar.platform.errors import Unauthenticated
from masar.platform.identity import CLOCK_LEEWAY, _b64url, _b64url_decode, key_id
from masar.platform.settings import (
    BOOTSTRAP_CLIENT,
    TOKEN_ISSUER_HOLDER,
    KeySettings,
    SettingsError,
)

ASSERTION_TYPE = "masar-client"
ASSERTION_TTL = timedelta(minutes=1)
MAX_ASSERTION_TTL = timedelta(minutes=5)
CLIENT_KIND = "client"
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def client_kind(name: str) -> str:
    return f"{CLIENT_KIND}:{name}"


def public_file(keys: KeySettings, name: str) -> Path:
    return keys.trusted_clients_dir / f"{name}.json"


class ClientKey:
    """One client's key: it signs the client's assertions."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        if not _NAME.fullmatch(name):
            raise SettingsError("a client is named by a short lowercase id")
        self.name = name
        self._key = key
        self.key_id = key_id(key.public_key())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @classmethod
    def generate(cls, name: str) -> ClientKey:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_keys(cls, keys: KeySettings, *, create: bool = False) -> ClientKey:
        """The holder's own client key: MASAR_CLIENT_KEY, else its key file
        (which `masar up` creates; `create` makes it here on first use)."""
        if keys.client_key:
            key = keyfiles.private_from_b64(keys.client_key, source="MASAR_CLIENT_KEY")
            return cls(keys.holder, key)
        path = keys.client_key_path
        kind = client_kind(keys.holder)
        if create:
            key = keyfiles.ensure_key_pair(path, public_file(keys, keys.holder), kind)
        else:
            key = keyfiles.read_private(path, kind)
        return cls(keys.holder, key)

    def assertion(self, *, now: datetime | None = None, ttl: timedelta = ASSERTION_TTL) -> str:
        """A fresh assertion for the network service (use it once)."""
        issued = int((now or datetime.now(UTC)).timestamp())
        header = {"alg": "EdDSA", "typ": ASSERTION_TYPE, "kid": self.key_id}
        claims = {
            "iss": self.name,
            "sub": self.name,
            "aud": TOKEN_ISSUER_HOLDER,
            "iat": issued,
            "exp": issued + int(ttl.total_seconds()),
            "jti": secrets.token_hex(12),
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._key.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{_b64url(signature)}"


@dataclass(frozen=True)
class VerifiedClient:
    name: str
    assertion_id: str

    @property
    def is_bootstrap(self) -> bool:
        return self.name == BOOTSTRAP_CLIENT


class ClientRegistry:
    """The clients the network service trusts, and the assertions it has
    seen (each is accepted once)."""

    def __init__(self, trusted: Mapping[str, list[Ed25519PublicKey]]) -> None:
        self._keys: dict[str, tuple[str, Ed25519PublicKey]] = {}
        for name, public_keys in trusted.items():
            for key in public_keys:
                self._keys[key_id(key)] = (name, key)
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self._keys.values())

    @classmethod
    def from_keys(cls, keys: KeySettings) -> ClientRegistry:
        """MASAR_NETWORK_CLIENT_KEYS, else the local stack's public client
        files (none: no client is trusted)."""
        trusted: dict[str, list[Ed25519PublicKey]] = {}
        if keys.trusted_clients:
            for part in filter(None, (p.strip() for p in keys.trusted_clients.split(","))):
                name, sep, value = part.partition(":")
                if not sep or not _NAME.fullmatch(name):
                    raise SettingsError(
                        "MASAR_NETWORK_CLIENT_KEYS must be 'name:BASE64PUBLICKEY,...'"
                    )
                trusted.setdefault(name, []).append(
                    keyfiles.public_from_b64(value, source="MASAR_NETWORK_CLIENT_KEYS")
                )
            return cls(trusted)
        directory = keys.trusted_clients_dir
        if directory.is_dir():
            for file in sorted(directory.glob("*.json")):
                name = file.stem
                if _NAME.fullmatch(name):
                    trusted[name] = keyfiles.read_public(file, client_kind(name))
        return cls(trusted)

    def verify(self, assertion: str, *, now: datetime | None = None) -> VerifiedClient:
        """The client an assertion proves; `Unauthenticated` (saying no more)
        if it is malformed, not signed by a trusted client's key, not for the
        network service, expired, too long-lived, or already used."""
        refused = Unauthenticated("client assertion refused")
        if not assertion or len(assertion) > 2048 or assertion.count(".") != 2:
            raise refused
        header_b64, claims_b64, signature_b64 = assertion.split(".")
        try:
            header = json.loads(_b64url_decode(header_b64))
            claims: Any = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(signature_b64)
        except ValueError:
            raise refused from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise refused
        if header.get("alg") != "EdDSA" or header.get("typ") != ASSERTION_TYPE:
            raise refused
        found = self._keys.get(str(header.get("kid", "")))
        if found is None:
            raise refused
        name, key = found
        try:
            key.verify(signature, f"{header_b64}.{claims_b64}".encode("ascii"))
        except InvalidSignature:
            raise refused from None
        issued, expires, jti = claims.get("iat"), claims.get("exp"), claims.get("jti")
        if (
            claims.get("sub") != name
            or claims.get("aud") != TOKEN_ISSUER_HOLDER
            or not isinstance(issued, int)
            or not isinstance(expires, int)
            or not isinstance(jti, str)
            or not 16 <= len(jti) <= 64
        ):
            raise refused
        moment = (now or datetime.now(UTC)).timestamp()
        leeway = CLOCK_LEEWAY.total_seconds()
        if (
            expires <= moment
            or issued > moment + leeway
            or expires - issued > MAX_ASSERTION_TTL.total_seconds()
        ):
            raise refused
        with self._lock:
            wall = time.time()
            for seen, until in list(self._seen.items()):
                if until < wall:
                    del self._seen[seen]
            if jti in self._seen:
                raise refused
            self._seen[jti] = wall + MAX_ASSERTION_TTL.total_seconds() + leeway
        return VerifiedClient(name=name, assertion_id=jti)


def ensure_client_key(keys: KeySettings) -> ClientKey:
    """The local stack: the holder's client key, created with its public half
    published for the network service (`masar up`, before anything starts)."""
    return ClientKey.from_keys(keys, create=True)
