"""Key rotation in the middle of a journey, on the real stack: the journey
starts under ring {k1}; every process (here, all in this one) moves to ring
{k2 active, k1}; the journey goes on to its closure. What was written under
k1 — Temporal payloads, PII columns, audit heads — still reads; what is
written after is sealed with k2."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.history.v1 import History
from temporalio.client import Client

from masar import contract as c
from masar.platform import audit
from masar.platform.codec import KEY_ID_METADATA, is_encrypted
from masar.platform.crypto import DecryptionError, Keyring, install_keyring
from masar.v1 import intake_pb2
from tests.integration.confidentiality import Markers, walk_to_closure
from tests.integration.live import live_stack, referral_in, register_request, seed_region

FES = "fes-meknes"


def _key_ids(history: History) -> set[str]:
    """The key ids of the encrypted payloads of a history."""
    ids: set[str] = set()

    def walk(message: object) -> None:
        for field, value in message.ListFields():  # type: ignore[attr-defined]
            if field.message_type is None or field.name == "header":
                continue
            items = list(value.values()) if hasattr(value, "values") else None
            if items is None:
                items = [value] if hasattr(value, "ListFields") else list(value)
            for item in items:
                if field.message_type.full_name == "temporal.api.common.v1.Payload":
                    # Our payloads name their key; the SDK's own local-activity
                    # markers carry plain bookkeeping (ids and times, never
                    # ours: the canary test searches the server's whole database).
                    if is_encrypted(item):
                        ids.add(item.metadata[KEY_ID_METADATA].decode())
                elif hasattr(item, "ListFields"):
                    walk(item)

    walk(history)
    return ids


async def test_a_journey_started_under_k1_finishes_under_k2(tmp_path: Path) -> None:
    old = Keyring.generate("k1")
    new = old.rotated("k2")
    install_keyring(old)
    markers = Markers()
    async with live_stack(tmp_path) as stack:
        await seed_region(stack, FES)
        reply = await stack.intake.RegisterCase(
            register_request(FES, alias=markers.text("alias"), phone=markers.phone())
        )
        case_id = reply.case.summary.case_id
        await stack.wait_status(case_id, referral_in(c.Sector.SHELTER, c.ReferralStatus.PENDING))

        install_keyring(new)  # every process of the stack rotates
        closed = await walk_to_closure(
            stack,
            case_id,
            hearing_note=markers.text("hearing_note"),
            follow_up_note=markers.text("follow_up_note"),
        )
        assert closed.stage == c.Stage.CLOSED

        # Data sealed under k1 still reads; new data is sealed under k2.
        case = (await stack.intake.GetCase(intake_pb2.GetCaseRequest(case_id=case_id))).case
        assert case.survivor.alias == markers.by_field["alias"]
        assert [ch.notes for ch in case.changes if ch.notes] == [markers.by_field["follow_up_note"]]
        intake = stack.sectors["intake"]
        with intake.database.engine.connect() as conn:
            alias = conn.exec_driver_sql(
                "SELECT alias FROM cases WHERE case_id = ?", (case_id,)
            ).scalar_one()
            notes = conn.exec_driver_sql(
                "SELECT notes FROM case_changes WHERE case_id = ? AND notes IS NOT NULL",
                (case_id,),
            ).scalar_one()
        assert alias.startswith("enc1:k1:") and notes.startswith("enc1:k2:")
        with pytest.raises(DecryptionError):
            old.decrypt_text(notes, purpose="intake.change_notes")
        for process in stack.sectors.values():
            assert audit.verify(process.database.engine, keyring=new).ok

        # The journey's history holds payloads of both keys (as the server sees it).
        raw = await Client.connect(stack.temporal.address)
        history = await raw.get_workflow_handle(c.journey_workflow_id(case_id)).fetch_history()
        assert _key_ids(History(events=history.events)) == {"k1", "k2"}
