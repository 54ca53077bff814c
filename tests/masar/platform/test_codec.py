"""The payload codec, alone and through a real Temporal dev server."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.converter import DataConverter, WorkflowSerializationContext
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from masar.platform.codec import (
    ENCODING,
    KEY_ID_METADATA,
    REFUSED_ENCODING,
    REFUSED_METADATA,
    EncryptionCodec,
    PayloadDecryptionError,
    decrypt_payload,
    encrypt_payload,
)
from masar.platform.crypto import Keyring, install_keyring
from masar.platform.temporal import client_options, data_converter, replay_data_converter

# --- the codec alone ------------------------------------------------------------


def _json_payload(text: str) -> Payload:
    return DataConverter.default.payload_converter.to_payloads([text])[0]


async def test_roundtrip_names_the_key_and_hides_the_data() -> None:
    ring = Keyring.generate("k1")
    codec = EncryptionCodec(ring)
    original = _json_payload("Marker-roundtrip")
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"k1"
    assert b"Marker-roundtrip" not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.SerializeToString()  # metadata sealed too
    [opened] = await codec.decode([sealed])
    assert opened == original
    # Random nonce: the same value never gives the same ciphertext.
    [again] = await codec.encode([original])
    assert again.data != sealed.data


def test_unknown_key_and_tampering_are_refused() -> None:
    ring = Keyring.generate("k1")
    sealed = encrypt_payload(ring, _json_payload("x"))
    with pytest.raises(PayloadDecryptionError):
        decrypt_payload(Keyring.generate("other"), sealed)
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptionError):
        decrypt_payload(ring, tampered)


def test_plain_payloads_pass_through_decrypt_payload() -> None:
    """`decrypt_payload` alone (the codec server shows plaintext as it came)."""
    plain = _json_payload("written before the codec")
    assert decrypt_payload(Keyring.generate("k1"), plain) == plain


async def test_the_codec_refuses_plaintext_and_what_it_cannot_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ring = Keyring.generate("k1")
    codec = EncryptionCodec(ring)
    plain = _json_payload("Marker-injected")
    foreign = encrypt_payload(Keyring.generate("k1"), _json_payload("Marker-foreign"))
    garbage = Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: b"k1"}, data=b"\x00" * 40)
    sealed = encrypt_payload(ring, _json_payload("fine"))
    with caplog.at_level("WARNING", logger="masar.platform.codec"):
        opened = await codec.decode([plain, foreign, garbage, sealed])
    # Refused in place (the codec never raises: a workflow task would fail and
    # the journey stall), with the reason only; the good one opens.
    assert [p.metadata["encoding"] for p in opened[:3]] == [REFUSED_ENCODING] * 3
    assert [p.metadata[REFUSED_METADATA] for p in opened[:3]] == [
        b"plaintext",
        b"undecryptable",
        b"undecryptable",
    ]
    assert all(not p.data for p in opened[:3])
    assert opened[3] == _json_payload("fine")
    assert "Marker" not in caplog.text and "payload refused" in caplog.text
    # No converter reads a refused payload: whatever expected a value fails.
    converter = data_converter(keyring=ring)
    with pytest.raises(Exception, match="binary/masar-refused"):
        converter.payload_converter.from_payloads(opened[:1], [str])
    # Through the whole data converter, as a worker decodes an Update's input.
    with pytest.raises(Exception, match="binary/masar-refused"):
        await converter.decode([plain], [str])
    # The context keeps the refusal (workers decode under a workflow's context).
    bound = codec.with_context(
        WorkflowSerializationContext(namespace="default", workflow_id="journey-x")
    )
    assert not bound.allow_plaintext and bound.workflow_id == "journey-x"


async def test_replay_converter_reads_histories_from_before_the_codec() -> None:
    ring = Keyring.generate("k1")
    converter = replay_data_converter(keyring=ring)
    assert await converter.decode([_json_payload("old")], [str]) == ["old"]
    sealed = await data_converter(keyring=ring).encode(["new"])
    assert await converter.decode(sealed, [str]) == ["new"]


def test_data_converter_uses_the_process_keyring() -> None:
    ring = Keyring.generate("proc")
    install_keyring(ring)
    try:
        converter = data_converter()
        assert isinstance(converter.payload_codec, EncryptionCodec)
        assert converter.payload_codec.keyring is ring
        assert client_options()["data_converter"].payload_codec.keyring is ring
        # Every client of the process follows the process's ring.
        replaced = Keyring.generate("proc2")
        install_keyring(replaced)
        assert converter.payload_codec.keyring is replaced
    finally:
        install_keyring(None)


# --- through a real server --------------------------------------------------------


@activity.defn(name="codec_probe.fail")
async def failing_activity(detail: str) -> str:
    raise ApplicationError(f"provider unreachable for {detail}", type="Probe", non_retryable=True)


@workflow.defn(name="CodecProbe")
class CodecProbe:
    @workflow.run
    async def run(self, secret: str) -> str:
        try:
            await workflow.execute_activity(
                failing_activity,
                f"{secret}-activity",
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            raise ApplicationError(
                f"journey failed for {secret}-workflow", type="Probe", non_retryable=True
            ) from err
        return secret


@workflow.defn(name="CodecRotationProbe")
class RotationProbe:
    def __init__(self) -> None:
        self._secret = ""
        self._reply: str | None = None

    @workflow.run
    async def run(self, secret: str) -> str:
        self._secret = secret
        await workflow.wait_condition(lambda: self._reply is not None)
        return f"{secret}|{self._reply}"

    @workflow.signal
    def reply(self, value: str) -> None:
        self._reply = value

    @workflow.query
    def secret(self) -> str:
        return self._secret


async def _connect(address: str, ring: Keyring) -> Client:
    return await Client.connect(address, **client_options(keyring=ring))


def _worker(client: Client, task_queue: str, **kwargs: object) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CodecProbe, RotationProbe],
        activities=[failing_activity],
        workflow_runner=UnsandboxedWorkflowRunner(),
        **kwargs,  # type: ignore[arg-type]
    )


# Headers are left to the SDK's default (not run through the codec: the test
# environments cannot encode them); Masar's only header is the tracing
# interceptor's W3C trace context. The canary test (tests/integration) proves
# no personal data reaches the server's database by any path.
TRACE_HEADER = "_tracer-data"


def _payloads(history: History) -> list[Payload]:
    """Every payload in a history (inputs, results, signals, failures), but
    headers, which carry only the trace context (see `_header_keys`)."""
    found: list[Payload] = []

    def walk(message: object) -> None:
        if isinstance(message, Payload):
            found.append(message)
            return
        for field, value in message.ListFields():  # type: ignore[attr-defined]
            if field.message_type is None or field.name == "header":
                continue
            if hasattr(value, "ListFields"):
                items = [value]
            elif hasattr(value, "values"):  # a map of messages
                items = list(value.values())
            else:
                items = list(value)
            for item in items:
                if hasattr(item, "ListFields"):
                    walk(item)

    walk(history)
    return found


def _header_keys(history: History) -> set[str]:
    keys: set[str] = set()
    for event in history.events:
        attributes = getattr(event, event.WhichOneof("attributes") or "", None)
        if attributes is not None and "header" in attributes.DESCRIPTOR.fields_by_name:
            keys.update(attributes.header.fields.keys())
    return keys


async def test_history_holds_only_ciphertext(temporal_dev_server) -> None:
    marker = f"Marker-{secrets.token_hex(6)}"
    ring = Keyring.generate("k1")
    client = await _connect(temporal_dev_server.address, ring)
    task_queue = f"codec-{uuid.uuid4().hex[:8]}"
    async with _worker(client, task_queue):
        handle = await client.start_workflow(
            CodecProbe.run, marker, id=f"codec-{uuid.uuid4().hex}", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    # Through the codec, everything reads back.
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and f"{marker}-workflow" in cause.message
    activity_failure = cause.__cause__
    assert isinstance(activity_failure, ActivityError)
    assert f"{marker}-activity" in str(activity_failure.cause)

    # Without the codec (as the server, its database and its UI see it): nothing.
    raw = await Client.connect(temporal_dev_server.address)
    history = History(events=(await raw.get_workflow_handle(handle.id).fetch_history()).events)
    raw_bytes = history.SerializeToString()
    assert marker.encode() not in raw_bytes
    assert b"provider unreachable" not in raw_bytes and b"journey failed" not in raw_bytes
    failure_messages = [
        e.activity_task_failed_event_attributes.failure.message
        for e in history.events
        if e.HasField("activity_task_failed_event_attributes")
    ]
    assert failure_messages == ["Encoded failure"]
    payloads = _payloads(history)
    assert payloads and all(p.metadata["encoding"] == ENCODING for p in payloads)
    assert _header_keys(history) <= {TRACE_HEADER}
    # Positive control: the same history decrypts to the marker with the key.
    opened = [decrypt_payload(ring, p).SerializeToString() for p in payloads]
    assert any(marker.encode() in blob for blob in opened)


async def test_journey_started_under_old_key_finishes_under_new(temporal_dev_server) -> None:
    old_ring = Keyring.generate("k1")
    new_ring = old_ring.rotated("k2")
    marker = f"Marker-{secrets.token_hex(6)}"
    task_queue = f"rotation-{uuid.uuid4().hex[:8]}"
    workflow_id = f"rotation-{uuid.uuid4().hex}"

    old_client = await _connect(temporal_dev_server.address, old_ring)
    # No cache: the new worker must replay the whole history, k1 payloads included.
    async with _worker(old_client, task_queue, max_cached_workflows=0):
        handle = await old_client.start_workflow(
            RotationProbe.run, marker, id=workflow_id, task_queue=task_queue
        )
        assert await handle.query(RotationProbe.secret) == marker

    new_client = await _connect(temporal_dev_server.address, new_ring)
    async with _worker(new_client, task_queue):
        new_handle = new_client.get_workflow_handle(workflow_id)
        await new_handle.signal(RotationProbe.reply, "after-rotation")
        assert await new_handle.result() == f"{marker}|after-rotation"

    raw = await Client.connect(temporal_dev_server.address)
    history = History(events=(await raw.get_workflow_handle(workflow_id).fetch_history()).events)
    key_ids = {p.metadata[KEY_ID_METADATA] for p in _payloads(history)}
    assert key_ids == {b"k1", b"k2"}
    # The newest key encrypted what came after rotation: the old ring cannot read it.
    completed = next(
        e.workflow_execution_completed_event_attributes.result.payloads[0]
        for e in history.events
        if e.HasField("workflow_execution_completed_event_attributes")
    )
    assert completed.metadata[KEY_ID_METADATA] == b"k2"
    with pytest.raises(PayloadDecryptionError):
        decrypt_payload(old_ring, completed)
