"""Only those allowed can steer a journey, on the real stack (issue 12, items
2 and 3): the dev server, the four services with their databases and
workers, the journey worker.

A raw Temporal client (the SDK's default data converter, no key, no token)
sends every journey Update to a live journey: each is refused. A client with
the key sends forged, mis-scoped and replayed assertions: each is refused.
The journey's status (state and timeline) and the sectors' databases are
unchanged; then the shelter's staff accept through the shelter's API and the
check-in wait's reminder comes when due.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from masar import contract as c
from masar.platform.assertions import Actor, AssertionSigner
from masar.v1 import common_pb2
from tests.integration.live import (
    LiveStack,
    live_stack,
    referral_in,
    register_request,
    seed_region,
)
from tests.support_assertions import SIGNERS, as_coordinator, every_update, signed

REGION = "fes-meknes"
SECTORS: tuple[c.ServiceName, ...] = ("shelter", "legal", "employment")
# The check-in wait is short, so its reminder comes within the test (at half).
POLICY = """
[deadlines.shelter_checkin]
critical = "16s"
high = "16s"
medium = "16s"
low = "16s"
"""


def database_dump(stack: LiveStack, name: c.ServiceName) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of a service's database, as stored."""
    engine = stack.sectors[name].database.engine
    dump: dict[str, list[tuple[object, ...]]] = {}
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            rows = conn.execute(text(f'SELECT * FROM "{table}"'))
            dump[table] = sorted((tuple(row) for row in rows), key=repr)
    return dump


def sectors_dump(stack: LiveStack) -> dict[str, object]:
    return {name: database_dump(stack, name) for name in SECTORS}


async def test_only_signed_updates_from_their_senders_steer_a_live_journey(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    async with live_stack(tmp_path / "data", policy_file=policy) as stack:
        await seed_region(stack, REGION)
        reply = await stack.intake.RegisterCase(
            register_request(REGION, needs=("shelter",), consents=("shelter",))
        )
        case_id = reply.case.summary.case_id
        ref = await stack.wait_status(
            case_id, referral_in(c.Sector.SHELTER, c.ReferralStatus.PENDING)
        )
        handle = stack.client.get_workflow_handle(c.journey_workflow_id(case_id))
        now = (await stack.status(case_id)).referrals[0].requested_at
        updates = every_update(ref, now)

        # A legitimate coordinator action first (replayed below).
        extension = dataclasses.replace(updates[c.UPDATE_EXTEND], extend_by_seconds=600)
        used = as_coordinator(c.UPDATE_EXTEND, case_id, extension, region=REGION)
        await handle.execute_update(c.UPDATE_EXTEND, used, result_type=c.UpdateResult)
        before_status = await stack.status(case_id)
        before_rows = sectors_dump(stack)

        # Without the key: every Update refused (plaintext), signed or not.
        raw = await Client.connect(stack.temporal.address)
        raw_handle = raw.get_workflow_handle(c.journey_workflow_id(case_id))
        for name, event in updates.items():
            with pytest.raises((WorkflowUpdateFailedError, RPCError)):
                await raw_handle.execute_update(name, event)
            with pytest.raises((WorkflowUpdateFailedError, RPCError)):
                await raw_handle.execute_update(
                    name, as_coordinator(name, case_id, event, region=REGION)
                )

        # With the key: unsigned, forged, mis-scoped and replayed.
        async def refused(name: str, event: object) -> str | None:
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await handle.execute_update(name, event, result_type=c.UpdateResult)
            return getattr(err.value.cause, "type", None)

        decision = dataclasses.replace(
            updates[c.UPDATE_REFERRAL_DECISION], accepted=True, decline_reason=None
        )
        staff = Actor("staff-1", "shelter_staff", organisation_id="org-1")
        for name, event in updates.items():
            assert await refused(name, event) == c.ERR_UNAUTHENTICATED, name
        impostor = AssertionSigner.generate("shelter")
        real = signed(c.UPDATE_REFERRAL_DECISION, case_id, decision, staff, issuer="shelter")
        forged = dataclasses.replace(
            real,
            assertion=dataclasses.replace(
                impostor.sign(c.UPDATE_REFERRAL_DECISION, case_id, decision, staff),
                key_id=SIGNERS["shelter"].key_id,
            ),
        )
        assert await refused(c.UPDATE_REFERRAL_DECISION, forged) == c.ERR_UNAUTHENTICATED
        by_intake = signed(c.UPDATE_REFERRAL_DECISION, case_id, decision, staff)
        assert await refused(c.UPDATE_REFERRAL_DECISION, by_intake) == c.ERR_FORBIDDEN
        by_legal = signed(c.UPDATE_REFERRAL_DECISION, case_id, decision, staff, issuer="legal")
        assert await refused(c.UPDATE_REFERRAL_DECISION, by_legal) == c.ERR_FORBIDDEN
        other_case = signed(c.UPDATE_REFERRAL_DECISION, "0" * 16, decision, staff, issuer="shelter")
        assert await refused(c.UPDATE_REFERRAL_DECISION, other_case) == c.ERR_FORBIDDEN
        swapped = dataclasses.replace(real, accepted=False, decline_reason="NO_CAPACITY")
        assert await refused(c.UPDATE_REFERRAL_DECISION, swapped) == c.ERR_FORBIDDEN
        for name in (c.UPDATE_EXTEND, c.UPDATE_REASSIGN, c.UPDATE_CLOSURE_DECISION):
            foreign = as_coordinator(name, case_id, updates[name], region="oriental")
            assert await refused(name, foreign) == c.ERR_FORBIDDEN, name
        assert await refused(c.UPDATE_EXTEND, used) == c.ERR_UNAUTHENTICATED  # replayed

        # Nothing changed: the journey's state and timeline, the sectors' rows.
        assert await stack.status(case_id) == before_status
        assert sectors_dump(stack) == before_rows

        # The shelter's staff accept through its API: delivered, signed by the shelter.
        decided = await stack.shelter.DecideReferral(
            common_pb2.DecideReferralRequest(
                referral_id=ref.referral_id,
                decision=common_pb2.DECISION_ACCEPT,
                idempotency_key="accept-1",
            )
        )
        assert decided.delivery == common_pb2.DELIVERY_STATE_DELIVERED
        await stack.wait_status(case_id, referral_in(c.Sector.SHELTER, c.ReferralStatus.ACCEPTED))
        # And the check-in wait's first rung comes when due (8 s).
        await stack.wait_status(
            case_id,
            lambda s: [e for e in s.timeline if e.event == "reminder"] or None,
            wait_seconds=40,
        )
