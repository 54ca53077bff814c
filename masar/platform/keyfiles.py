"""Ed25519 key files: one private key per file, its public half published apart.

A private key file (0600, in a 0700 directory: masar.platform.crypto) is a
JSON object `{"kind", "private_key", "public_key"}`; `kind` says what the
key is for ("token-issuer", "consent-signing", "client:<name>"), so a file
given for one purpose is refused for another. A public key file (0644) is
`{"kind", "public_keys": [...]}`: every key still trusted, the newest first,
so a key rotates by publishing the new one beside the old.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from masar.platform.crypto import create_private_file, private_dir, restrict_file
from masar.platform.settings import SettingsError

PUBLIC_FILE_MODE = 0o644


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_b64(key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_bytes(key)).decode()


def private_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.private_bytes_raw()).decode()


def raw_key(value: object, *, source: str) -> bytes:
    """The 32 bytes of a base64 Ed25519 key; SettingsError names `source`."""
    if not isinstance(value, str):
        raise SettingsError(f"{source}: a key is base64 text")
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{source} is not valid base64") from None
    if len(raw) != 32:
        raise SettingsError(f"{source} must be a 32-byte Ed25519 key")
    return raw


def private_from_b64(value: str, *, source: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw_key(value, source=source))


def public_from_b64(value: str, *, source: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw_key(value, source=source))


def public_list(value: str, *, source: str) -> list[Ed25519PublicKey]:
    """Comma-separated base64 public keys (a *_PUBLIC_KEY variable)."""
    return [
        public_from_b64(part, source=source)
        for part in (p.strip() for p in value.split(","))
        if part
    ]


# --- private key files -------------------------------------------------------------------


def _private_doc(kind: str, key: Ed25519PrivateKey) -> str:
    return json.dumps(
        {
            "kind": kind,
            "private_key": private_b64(key),
            "public_key": public_b64(key.public_key()),
        },
        indent=2,
    )


def read_private(path: Path, kind: str) -> Ed25519PrivateKey:
    """The key in `path`, which must exist and be a `kind` key."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path} does not exist") from None
    except (OSError, ValueError):
        raise SettingsError(f"{path} is not a key file") from None
    if not isinstance(doc, dict) or "private_key" not in doc:
        raise SettingsError(f"{path} is not a key file")
    if doc.get("kind") != kind:
        raise SettingsError(f"{path} holds another kind of key, not a {kind} key")
    restrict_file(path)
    return private_from_b64(doc["private_key"], source=str(path))


def load_or_create_private(path: Path, kind: str) -> Ed25519PrivateKey:
    """The `kind` key in `path`, created (0600) on first use."""
    if not path.exists():
        # False: another process of the stack created it first.
        create_private_file(path, _private_doc(kind, Ed25519PrivateKey.generate()))
    return read_private(path, kind)


# --- public key files ----------------------------------------------------------------------


def read_public(path: Path, kind: str) -> list[Ed25519PublicKey]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path} does not exist") from None
    except (OSError, ValueError):
        raise SettingsError(f"{path} is not a public key file") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise SettingsError(f"{path} is not a {kind} public key file")
    keys = doc.get("public_keys")
    if not isinstance(keys, list) or not keys:
        raise SettingsError(f"{path} names no public key")
    return [public_from_b64(k, source=str(path)) for k in keys]


def publish(path: Path, kind: str, keys: Iterable[Ed25519PublicKey]) -> None:
    """Write (or replace, whole) the public key file `path`, its newest key
    first; the keys already published are kept after it (rotation)."""
    wanted = [public_b64(k) for k in keys]
    try:
        known = [public_b64(k) for k in read_public(path, kind)]
    except SettingsError:
        known = []
    merged = list(dict.fromkeys([*wanted, *known]))
    if merged == known:
        return
    private_dir(path.parent)
    doc = json.dumps({"kind": kind, "public_keys": merged}, indent=2)
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PUBLIC_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), PUBLIC_FILE_MODE)
        f.write(doc)
    os.replace(aside, path)


def ensure_key_pair(private_path: Path, public_path: Path, kind: str) -> Ed25519PrivateKey:
    """The local stack's `kind` key: its private file (created on first use)
    and its public half published in `public_path`."""
    key = load_or_create_private(private_path, kind)
    publish(public_path, kind, [key.public_key()])
    return key
