"""Signing actor assertions: how a service vouches for the Updates it sends.

Every journey Update carries an `ActorAssertion` (masar.contract.assertion):
who acted, in which role, organisation and region, on which case, with which
Update, over which payload, when, and a unique id — signed with the sending
service's own Ed25519 *assertion key*. The journey verifies it against the
issuers' public keys (workflows.authentication) before anything is written.

How a sender signs (the outbox does it for intake's changes and the sectors'
staff actions; the journey API does it for coordinators' actions):

    signer = AssertionSigner.from_env("intake", environ)   # once, at start
    event = dataclasses.replace(
        event, assertion=signer.sign(UPDATE_EXTEND, case_id, event, actor)
    )
    await handle.execute_update(UPDATE_EXTEND, event, ...)

with `actor = Actor.of(caller)` from the verified token (or `Actor.service(...)`
for a change made outside any request). Sign right before sending: an
assertion lives five minutes and is good for one delivery.

Key material, one key per sending service, never shared:
- MASAR_<SERVICE>_ASSERTION_KEY_FILE names the service's private key file;
  by default $MASAR_DATA_DIR/keys/<service>-assertion.json, created (0600, in
  a 0700 directory) on first use, with its public half next to it in
  <service>-assertion.pub.json;
- MASAR_ASSERTION_PUBLIC_KEYS (the journey worker): a directory of
  `*-assertion.pub.json` files, or one such file (an object or a list of
  objects `{"issuer", "key_id", "public_key"}`); by default
  $MASAR_DATA_DIR/keys. To rotate a key, publish the new public key next to
  the old one first; a journey reads the keys at the start of each run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from masar.contract.assertion import (
    ActorAssertion,
    IssuerKey,
    jsonable,
    payload_digest,
    service_role,
    signing_bytes,
)
from masar.platform.settings import SettingsError, process_environ

KEYS_DIR = "keys"
PUBLIC_KEYS_ENV = "MASAR_ASSERTION_PUBLIC_KEYS"
ISSUERS = ("intake", "shelter", "legal", "employment", "network", "health", "psychosocial")


def key_file_env(service: str) -> str:
    return f"MASAR_{service.upper()}_ASSERTION_KEY_FILE"


def private_key_name(service: str) -> str:
    return f"{service}-assertion.json"


def public_key_name(service: str) -> str:
    return f"{service}-assertion.pub.json"


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_id(service: str, key: Ed25519PublicKey) -> str:
    """`<service>-<fingerprint>`: names the issuer, so ids never collide."""
    return f"{service}-{hashlib.sha256(_raw_public(key)).hexdigest()[:16]}"


def _b64_32(value: object, *, source: str) -> bytes:
    if not isinstance(value, str):
        raise SettingsError(f"{source}: a key must be base64 text")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{source}: a key is not valid base64") from None
    if len(raw) != 32:
        raise SettingsError(f"{source}: a key must be a 32-byte Ed25519 key")
    return raw


def _data_dir(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("MASAR_DATA_DIR", "./var").strip() or "./var").expanduser()


# --- who acted ---------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """The verified identity a service acts for (never from a request's fields)."""

    actor_id: str
    role: str
    organisation_id: str = ""
    region: str = ""
    grant_id: str = ""

    @classmethod
    def of(cls, caller: Any, *, grant_id: str = "") -> Actor:
        """From a `masar.platform.identity.Caller` (the verified token)."""
        return cls(
            actor_id=str(caller.subject),
            role=str(getattr(caller.role, "value", caller.role)),
            organisation_id=str(caller.org or ""),
            region=str(caller.region or ""),
            grant_id=grant_id,
        )

    @classmethod
    def service(cls, issuer: str) -> Actor:
        """The service itself, for a change made outside any request."""
        return cls(actor_id=service_role(issuer), role=service_role(issuer))

    def to_json(self) -> dict[str, str]:
        return {
            "actor_id": self.actor_id,
            "role": self.role,
            "organisation_id": self.organisation_id,
            "region": self.region,
            "grant_id": self.grant_id,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Actor:
        return cls(
            actor_id=str(doc["actor_id"]),
            role=str(doc["role"]),
            organisation_id=str(doc.get("organisation_id") or ""),
            region=str(doc.get("region") or ""),
            grant_id=str(doc.get("grant_id") or ""),
        )


# --- the signer ---------------------------------------------------------------------


class AssertionSigner:
    """One service's assertion key. Only that service's process holds it."""

    def __init__(self, issuer: str, key: Ed25519PrivateKey) -> None:
        if not issuer or not issuer.isidentifier():
            raise SettingsError("an assertion issuer is a service name")
        self.issuer = issuer
        self._key = key
        self.key_id = public_key_id(issuer, key.public_key())

    @classmethod
    def generate(cls, issuer: str) -> AssertionSigner:
        return cls(issuer, Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> IssuerKey:
        raw = _raw_public(self._key.public_key())
        return IssuerKey(
            issuer=self.issuer, key_id=self.key_id, public_key=base64.b64encode(raw).decode()
        )

    def sign(
        self,
        update_name: str,
        case_id: str,
        payload: Any,
        actor: Actor,
        *,
        now: datetime | None = None,
    ) -> ActorAssertion:
        """An assertion for sending `payload` (the Update dataclass, or the
        JSON object an outbox keeps; any assertion in it is ignored) as
        `update_name` to `case_id`'s journey, on behalf of `actor`."""
        assertion = ActorAssertion(
            assertion_id=secrets.token_hex(16),
            issuer=self.issuer,
            key_id=self.key_id,
            actor_id=actor.actor_id,
            role=actor.role,
            case_id=case_id,
            update_name=update_name,
            payload_digest=payload_digest(payload),
            issued_at=(now or datetime.now(UTC)).astimezone(UTC),
            organisation_id=actor.organisation_id,
            region=actor.region,
            grant_id=actor.grant_id,
        )
        signature = self._key.sign(signing_bytes(assertion))
        assertion.signature = base64.b64encode(signature).decode()
        return assertion

    def sign_json(
        self, update_name: str, case_id: str, payload: Mapping[str, Any], actor: Actor
    ) -> dict[str, Any]:
        """`payload` (a JSON object) with its signed assertion in `assertion`."""
        signed = dict(payload)
        signed.pop("assertion", None)
        signed["assertion"] = jsonable(self.sign(update_name, case_id, signed, actor))
        return signed

    # --- files ----------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "issuer": self.issuer,
                "key_id": self.key_id,
                "private_key": base64.b64encode(self._key.private_bytes_raw()).decode(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, *, issuer: str, source: str) -> AssertionSigner:
        try:
            doc = json.loads(text)
            named = doc["issuer"]
            raw = _b64_32(doc["private_key"], source=source)
        except (KeyError, ValueError, TypeError):
            raise SettingsError(f"{source} is not an assertion key file") from None
        if named != issuer:
            raise SettingsError(f"{source} holds another service's assertion key")
        return cls(issuer, Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def load_or_create(cls, path: Path, issuer: str) -> AssertionSigner:
        """The key in `path`, created (0600) with its public half next to it
        (`<issuer>-assertion.pub.json`) when there is none."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            fresh = cls.generate(issuer)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process of the stack created it first
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(fresh.to_json())
        signer = cls.from_json(path.read_text(), issuer=issuer, source=str(path))
        signer.publish(path.parent / public_key_name(issuer))
        return signer

    def publish(self, path: Path) -> None:
        """Write the public key file (for the journey worker), if it differs."""
        doc = json.dumps(jsonable(self.public_key), indent=2)
        if path.exists() and path.read_text() == doc:
            return
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(doc)
        os.replace(tmp, path)

    @classmethod
    def from_env(cls, issuer: str, environ: Mapping[str, str] | None = None) -> AssertionSigner:
        """The service's own key: MASAR_<SERVICE>_ASSERTION_KEY_FILE, else
        $MASAR_DATA_DIR/keys/<service>-assertion.json (created on first use).
        The signer's public key is also known to journey workers of this
        process (tests and single-process tools)."""
        env = process_environ() if environ is None else environ
        configured = env.get(key_file_env(issuer), "").strip()
        if configured:
            path = Path(configured).expanduser()
            if not path.is_file():
                raise SettingsError(f"{key_file_env(issuer)} does not name a readable file")
            signer = cls.from_json(path.read_text(), issuer=issuer, source=key_file_env(issuer))
        else:
            signer = cls.load_or_create(
                _data_dir(env) / KEYS_DIR / private_key_name(issuer), issuer
            )
        register_public_key(signer.public_key)
        return signer


def ensure_service_keys(data_dir: Path, services: Iterable[str]) -> list[IssuerKey]:
    """Create each service's assertion key in `data_dir/keys` if missing (the
    local stack, before anything starts); their public keys."""
    return [
        AssertionSigner.load_or_create(
            data_dir / KEYS_DIR / private_key_name(name), name
        ).public_key
        for name in services
    ]


# --- the public keys (the journey worker) ------------------------------------------------

_registered: dict[str, IssuerKey] = {}
_registered_lock = threading.Lock()


def register_public_key(key: IssuerKey) -> None:
    """A signer of this process: its key is trusted by this process's journey
    workers too (tests and tools that run services and the journey together)."""
    with _registered_lock:
        _registered[key.key_id] = key


def registered_public_keys() -> list[IssuerKey]:
    with _registered_lock:
        return list(_registered.values())


def _issuer_key(doc: object, *, source: str) -> IssuerKey:
    if not isinstance(doc, dict):
        raise SettingsError(f"{source}: each public key is an object")
    try:
        issuer, key_id, public = doc["issuer"], doc["key_id"], doc["public_key"]
    except KeyError:
        raise SettingsError(f"{source}: a public key needs issuer, key_id and public_key") from None
    if not isinstance(issuer, str) or not isinstance(key_id, str) or not key_id:
        raise SettingsError(f"{source}: issuer and key_id are text")
    raw = _b64_32(public, source=source)
    expected = public_key_id(issuer, Ed25519PublicKey.from_public_bytes(raw))
    if key_id != expected:
        raise SettingsError(f"{source}: key_id does not match the key")
    return IssuerKey(issuer=issuer, key_id=key_id, public_key=base64.b64encode(raw).decode())


def read_public_keys(path: Path) -> list[IssuerKey]:
    """The public keys in a directory (`*-assertion.pub.json`) or one file."""
    files = sorted(path.glob("*-assertion.pub.json")) if path.is_dir() else [path]
    keys: list[IssuerKey] = []
    for file in files:
        if not file.is_file():
            continue
        try:
            doc = json.loads(file.read_text())
        except (OSError, ValueError):
            raise SettingsError(f"{file.name} is not a public key file") from None
        for item in doc if isinstance(doc, list) else [doc]:
            keys.append(_issuer_key(item, source=file.name))
    return keys


def public_keys_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the journey worker reads the issuers' public keys."""
    env = process_environ() if environ is None else environ
    configured = env.get(PUBLIC_KEYS_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return _data_dir(env) / KEYS_DIR


class PublicKeySource:
    """The issuers' public keys, read afresh each time (a journey asks at the
    start of each run): the configured directory or file, and the signers of
    this process."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path

    def __call__(self) -> list[IssuerKey]:
        found = {key.key_id: key for key in registered_public_keys()}
        if self.path is not None and self.path.exists():
            for key in read_public_keys(self.path):
                found[key.key_id] = key
        return sorted(found.values(), key=lambda k: k.key_id)
