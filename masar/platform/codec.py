"""The Temporal payload codec: every payload leaves the process encrypted.

Each payload is serialised whole (metadata and data), sealed with AES-256-GCM
under the key ring's active key and a random nonce, and wrapped in a new
payload whose metadata says `encoding: binary/encrypted` and names the key id
(`encryption-key-id`). Decoding accepts any key still in the ring, so keys
rotate without breaking running journeys: put the new key first and keep the
old ones until no open journey holds a payload sealed under them.

Each payload is also bound to the workflow it belongs to: the codec takes the
workflow id from Temporal's serialization context (`with_context`: the
client's target workflow, the worker's running workflow, an activity's
workflow), writes it in the clear into the wrapper's metadata
(`masar-workflow-id`: `journey-<case_id>`, an opaque id, no personal data) and
binds it into the ciphertext's associated data, so it cannot be edited or
stripped without decryption failing. The codec server
(masar.platform.codec_server) authorises each decode by that case. Payloads
sealed without a context (or before the binding existed) carry no workflow id
and decrypt as before.

Encoding always encrypts. Decoding refuses what it cannot open: a payload
that is not encrypted (a client without the key, such as the SDK's default
data converter, cannot put anything into a journey, an Update or an
activity), or one that names an unknown key or fails authentication. The
codec does not raise for them — that would fail the whole workflow task and
stall the journey; it hands back a *refused* payload (`encoding:
binary/masar-refused`, no data, only the reason code in `masar-refused`),
which no payload converter turns into a value: an Update carrying it is
rejected before its validator runs, an activity given it fails, and nothing
of the content is reported (a warning names the workflow and the reason).
Replaying histories written before the codec existed needs
`EncryptionCodec(allow_plaintext=True)` (`masar.platform.temporal
.replay_data_converter`); production never uses it. `decrypt_payload` alone
still passes plaintext through (the codec server shows it as it came).
The codec does not cover search attributes, workflow ids or memo keys — those
never carry personal data in Masar. Failure messages and stack traces are
covered because `masar.platform.temporal.data_converter` moves them into the failure's
encoded attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Self

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

from masar.platform.crypto import DecryptionError, Keyring, process_keyring

log = logging.getLogger(__name__)

ENCODING = b"binary/encrypted"
# What decoding hands back for a payload it refuses (no converter reads it).
REFUSED_ENCODING = b"binary/masar-refused"
REFUSED_METADATA = "masar-refused"
REFUSED_PLAINTEXT = "plaintext"
REFUSED_UNDECRYPTABLE = "undecryptable"
KEY_ID_METADATA = "encryption-key-id"
# The workflow a payload belongs to (in the clear, bound into the ciphertext).
WORKFLOW_ID_METADATA = "masar-workflow-id"
# Bound into every ciphertext, so a payload cannot be replayed as a PII column
# value (or the reverse) even under the same key.
PAYLOAD_AAD = b"masar.temporal.payload.v1"


class PayloadDecryptionError(DecryptionError):
    """An encrypted payload names an unknown key or failed authentication."""


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def _aad(workflow_id: str | None) -> bytes:
    if not workflow_id:
        return PAYLOAD_AAD
    return PAYLOAD_AAD + b"\x00" + workflow_id.encode()


def refused_payload(reason: str) -> Payload:
    """A payload no converter decodes: in place of one the codec refuses."""
    return Payload(metadata={"encoding": REFUSED_ENCODING, REFUSED_METADATA: reason.encode()})


def is_refused(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == REFUSED_ENCODING


def payload_workflow_id(payload: Payload) -> str | None:
    """The workflow an encrypted payload is bound to (None: bound to none).
    Trustworthy only once the payload has decrypted: the binding is checked
    by the decryption."""
    raw = payload.metadata.get(WORKFLOW_ID_METADATA)
    return raw.decode(errors="replace") if raw else None


def encrypt_payload(
    keyring: Keyring, payload: Payload, *, workflow_id: str | None = None
) -> Payload:
    key_id, blob = keyring.encrypt(payload.SerializeToString(), aad=_aad(workflow_id))
    metadata = {"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}
    if workflow_id:
        metadata[WORKFLOW_ID_METADATA] = workflow_id.encode()
    return Payload(metadata=metadata, data=blob)


def decrypt_payload(keyring: Keyring, payload: Payload) -> Payload:
    if not is_encrypted(payload):
        return payload
    key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
    try:
        plaintext = keyring.decrypt(key_id, payload.data, aad=_aad(payload_workflow_id(payload)))
    except DecryptionError as exc:
        raise PayloadDecryptionError(f"payload key {key_id!r}: {exc}") from None
    decoded = Payload()
    decoded.ParseFromString(plaintext)
    return decoded


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM payload codec over a Masar key ring: the given one, or else
    the process's (`masar.platform.crypto.process_keyring()`, looked up at each use, as
    the encrypted columns do — so every client and worker of a process always
    share one ring). Temporal gives it each payload's workflow through
    `with_context`; it binds the payloads it encodes to that workflow."""

    def __init__(
        self,
        keyring: Keyring | None = None,
        *,
        workflow_id: str | None = None,
        allow_plaintext: bool = False,
    ) -> None:
        self._keyring = keyring
        self.workflow_id = workflow_id
        # Only for replaying histories written before the codec existed.
        self.allow_plaintext = allow_plaintext

    def with_context(self, context: SerializationContext) -> Self:
        workflow_id = getattr(context, "workflow_id", None)
        return type(self)(
            self._keyring, workflow_id=workflow_id or None, allow_plaintext=self.allow_plaintext
        )

    @property
    def keyring(self) -> Keyring:
        return self._keyring or process_keyring()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        ring = self.keyring
        return [encrypt_payload(ring, p, workflow_id=self.workflow_id) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        ring = self.keyring
        return [self._open(ring, p) for p in payloads]

    def _open(self, ring: Keyring, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            if self.allow_plaintext:
                return payload
            return self._refuse(REFUSED_PLAINTEXT)
        try:
            return decrypt_payload(ring, payload)
        except PayloadDecryptionError:
            return self._refuse(REFUSED_UNDECRYPTABLE)

    def _refuse(self, reason: str) -> Payload:
        # The reason and the workflow only: never anything of the payload.
        log.warning(
            "payload refused", extra={"reason": reason, "workflow_id": self.workflow_id or ""}
        )
        return refused_payload(reason)
