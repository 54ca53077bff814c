"""The Temporal payload codec: every payload leaves the process encrypted.

Each payload is serialised whole (metadata and data), sealed with AES-256-GCM
under the key ring's active key and a random nonce, and wrapped in a new
payload whose metadata says `encoding: binary/encrypted` and names the key id
(`encryption-key-id`). Decoding accepts any key still in the ring, so keys
rotate without breaking running journeys: put the new key first and keep the
old ones until no open journey holds a payload sealed under them.

Payloads that are not encrypted pass through decoding unchanged (histories
written before the codec existed stay readable); encoding always encrypts.
The codec does not cover search attributes, workflow ids or memo keys — those
never carry personal data in Masar. Failure messages and stack traces are
covered because `masar.platform.temporal.data_converter` moves them into the failure's
encoded attributes.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from masar.platform.crypto import DecryptionError, Keyring, process_keyring

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
# Bound into every ciphertext, so a payload cannot be replayed as a PII column
# value (or the reverse) even under the same key.
PAYLOAD_AAD = b"masar.temporal.payload.v1"


class PayloadDecryptionError(DecryptionError):
    """An encrypted payload names an unknown key or failed authentication."""


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def encrypt_payload(keyring: Keyring, payload: Payload) -> Payload:
    key_id, blob = keyring.encrypt(payload.SerializeToString(), aad=PAYLOAD_AAD)
    return Payload(
        metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()},
        data=blob,
    )


def decrypt_payload(keyring: Keyring, payload: Payload) -> Payload:
    if not is_encrypted(payload):
        return payload
    key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
    try:
        plaintext = keyring.decrypt(key_id, payload.data, aad=PAYLOAD_AAD)
    except DecryptionError as exc:
        raise PayloadDecryptionError(f"payload key {key_id!r}: {exc}") from None
    decoded = Payload()
    decoded.ParseFromString(plaintext)
    return decoded


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec over a Masar key ring: the given one, or else
    the process's (`masar.platform.crypto.process_keyring()`, looked up at each use, as
    the encrypted columns do — so every client and worker of a process always
    share one ring)."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        self._keyring = keyring

    @property
    def keyring(self) -> Keyring:
        return self._keyring or process_keyring()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [encrypt_payload(self.keyring, p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [decrypt_payload(self.keyring, p) for p in payloads]
