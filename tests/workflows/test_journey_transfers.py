"""Case transfers between organisations, on the time-skipping server: the
request waits under the `transfer_accept` ladder (high risk: 24 h — a
reminder to the receiving organisation at 12 h, the region's coordinators at
24 h, the lapse at 48 h, the case staying with its holder); an answer, or a
coordinator's redirect, settles or restarts it; stale and unknown transfers
are refused by the validators; all of it is in the status and the timeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError

from masar import contract as c
from tests.workflows.support import Journey, JourneyTestbed, events, near, new_event_id

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
RUNG = c.INTAKE_RECORD_TRANSFER_RUNG
FROM, TO, OTHER = "org-assoc-fes", "org-centre-meknes", "org-assoc-taza"


async def request(journey: Journey, **fields: Any) -> c.TransferRequest:
    now = await journey.bed.now()
    values: dict[str, Any] = {
        "event_id": new_event_id(),
        "transfer_id": c.new_transfer_id(),
        "from_organisation_id": FROM,
        "to_organisation_id": TO,
        "reason": c.TransferReason.CLOSER_TO_HOME,
        "requested_at": now,
        "consent_at": now,
    }
    values.update(fields)
    event = c.TransferRequest(**values)
    await journey.update(c.UPDATE_TRANSFER_REQUEST, event)
    return event


async def decision(journey: Journey, transfer_id: str, **fields: Any) -> c.UpdateResult:
    values: dict[str, Any] = {
        "event_id": new_event_id(),
        "transfer_id": transfer_id,
        "to_organisation_id": TO,
        "accepted": True,
        "decided_at": await journey.bed.now(),
    }
    values.update(fields)
    return await journey.update(c.UPDATE_TRANSFER_DECISION, c.TransferDecision(**values))


async def rejected(journey: Journey, name: str, event: Any) -> str | None:
    before = await journey.status()
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await journey.update(name, event)
    after = await journey.status()
    assert after.timeline == before.timeline and after.transfers == before.transfers
    return getattr(err.value.cause, "type", None)


def only_transfer(status: c.JourneyStatus) -> c.TransferView:
    [transfer] = status.transfers
    return transfer


async def test_an_unanswered_transfer_climbs_the_ladder_and_lapses(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[], risk=c.Risk.HIGH)
    asked = await request(journey)
    status = await journey.status()
    transfer = only_transfer(status)
    assert (transfer.transfer_id, transfer.status) == (asked.transfer_id, c.TransferStatus.PENDING)
    assert (transfer.from_organisation_id, transfer.to_organisation_id) == (FROM, TO)
    assert near(transfer.deadline, transfer.requested_at + 24 * HOUR)
    assert transfer.reason is c.TransferReason.CLOSER_TO_HOME
    [opened] = events(status, "transfer_requested")
    assert opened.detail == f"{asked.transfer_id}:closer_to_home"

    # 12 h: a reminder to the receiving organisation, through intake.
    await bed.skip(12 * HOUR + MINUTE)
    [reminder] = await journey.until_calls(RUNG, 1)
    assert (reminder.arg.level, reminder.arg.lapsed) == (c.LEVEL_REMINDER, False)
    assert reminder.arg.to_organisation_id == TO
    assert reminder.arg.transfer_id == asked.transfer_id and reminder.arg.region == "fes-meknes"

    # 24 h: the region's coordinators; nothing reroutes it.
    await bed.skip(12 * HOUR)
    calls = await journey.until_calls(RUNG, 2)
    assert calls[1].arg.level == c.LEVEL_COORDINATOR and not calls[1].arg.lapsed
    status = await journey.until(lambda s: only_transfer(s).escalation_level == 2)
    assert only_transfer(status).to_organisation_id == TO
    assert status.escalation_level == c.LEVEL_COORDINATOR
    assert any(e.wait == c.TRANSFER_ACCEPT_WAIT and e.level == 2 for e in status.escalations)

    # 48 h: the request lapses; the case stays where it was.
    await bed.skip(24 * HOUR)
    calls = await journey.until_calls(RUNG, 3)
    assert calls[2].arg.level == c.LEVEL_REGIONAL and calls[2].arg.lapsed
    status = await journey.until(lambda s: only_transfer(s).status is c.TransferStatus.LAPSED)
    lapsed = only_transfer(status)
    assert lapsed.deadline is None and lapsed.escalation_level == c.LEVEL_REGIONAL
    assert not any(e.wait == c.TRANSFER_ACCEPT_WAIT for e in status.escalations)
    timeline = [e.event for e in status.timeline if (e.detail or "").find(asked.transfer_id) >= 0]
    assert timeline == ["transfer_requested", "reminder", "escalated", "transfer_lapsed"]

    # A late answer is refused: the request is no longer waiting.
    late = c.TransferDecision(
        event_id=new_event_id(),
        transfer_id=asked.transfer_id,
        to_organisation_id=TO,
        accepted=True,
        decided_at=await bed.now(),
    )
    assert await rejected(journey, c.UPDATE_TRANSFER_DECISION, late) == c.ERR_STALE_TRANSFER
    # Rung notices are never re-sent.
    await bed.skip(2 * HOUR)
    assert len(journey.calls(RUNG)) == 3


async def test_an_accepted_transfer_ends_its_wait(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[], risk=c.Risk.MEDIUM)
    asked = await request(journey, reason=c.TransferReason.LANGUAGE)
    transfer = only_transfer(await journey.status())
    assert near(transfer.deadline, transfer.requested_at + 72 * HOUR)

    await decision(journey, asked.transfer_id)
    status = await journey.status()
    accepted = only_transfer(status)
    assert accepted.status is c.TransferStatus.ACCEPTED and accepted.deadline is None
    assert accepted.decided_at is not None
    assert [e.detail for e in events(status, "transfer_accepted")] == [asked.transfer_id]
    # Its ladder is gone: days later, no rung was told to intake.
    await bed.skip(80 * HOUR)
    assert journey.calls(RUNG) == []
    # A new transfer may be asked now (from the new holder).
    await request(journey, from_organisation_id=TO, to_organisation_id=FROM)
    assert len((await journey.status()).transfers) == 2


async def test_a_redirect_restarts_the_wait_and_the_validators_refuse_stale_answers(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(needs=[], risk=c.Risk.HIGH)
    asked = await request(journey)
    tid = asked.transfer_id

    # A second request while one waits; a closure request meanwhile.
    second = c.TransferRequest(
        event_id=new_event_id(),
        transfer_id=c.new_transfer_id(),
        from_organisation_id=FROM,
        to_organisation_id=OTHER,
        reason=c.TransferReason.CAPACITY,
        requested_at=await bed.now(),
        consent_at=await bed.now(),
    )
    assert await rejected(journey, c.UPDATE_TRANSFER_REQUEST, second) == c.ERR_TRANSFER_OPEN
    closure = c.ClosureRequest(event_id=new_event_id(), at=await bed.now(), reason="moved")
    assert await rejected(journey, c.UPDATE_CLOSURE_REQUEST, closure) == c.ERR_TRANSFER_OPEN
    to_itself = c.TransferRequest(**{**second.__dict__, "to_organisation_id": FROM})
    assert await rejected(journey, c.UPDATE_TRANSFER_REQUEST, to_itself) == c.ERR_INVALID

    # Unknown transfer; an answer without a reason to decline.
    unknown = c.TransferDecision(
        event_id=new_event_id(),
        transfer_id="trf-unknown",
        to_organisation_id=TO,
        accepted=True,
        decided_at=await bed.now(),
    )
    assert await rejected(journey, c.UPDATE_TRANSFER_DECISION, unknown) == c.ERR_UNKNOWN_TRANSFER
    no_reason = c.TransferDecision(**{**unknown.__dict__, "transfer_id": tid, "accepted": False})
    assert await rejected(journey, c.UPDATE_TRANSFER_DECISION, no_reason) == c.ERR_INVALID

    # 13 h: the reminder went to TO; a coordinator redirects to OTHER.
    await bed.skip(13 * HOUR)
    await journey.until_calls(RUNG, 1)
    redirect = c.TransferRedirect(
        event_id=new_event_id(),
        transfer_id=tid,
        to_organisation_id=OTHER,
        coordinator_id="coord-fes-1",
        redirected_at=await bed.now(),
        consent_at=await bed.now(),
    )
    await journey.update(c.UPDATE_TRANSFER_REDIRECT, redirect)
    status = await journey.status()
    moved = only_transfer(status)
    assert moved.to_organisation_id == OTHER and moved.escalation_level == 0
    assert near(moved.deadline, await bed.now() + 24 * HOUR)
    [note] = events(status, "transfer_redirected")
    assert note.detail == tid and note.actor == "coord-fes-1"
    same_again = c.TransferRedirect(**{**redirect.__dict__, "event_id": new_event_id()})
    assert await rejected(journey, c.UPDATE_TRANSFER_REDIRECT, same_again) == c.ERR_INVALID

    # The organisation first asked can no longer answer; the new one can.
    stale = c.TransferDecision(**{**unknown.__dict__, "transfer_id": tid})
    assert await rejected(journey, c.UPDATE_TRANSFER_DECISION, stale) == c.ERR_STALE_TRANSFER
    # The wait started over: 12 h after the redirect, a reminder to OTHER.
    await bed.skip(12 * HOUR + MINUTE)
    calls = await journey.until_calls(RUNG, 2)
    assert calls[1].arg.to_organisation_id == OTHER and calls[1].arg.level == c.LEVEL_REMINDER
    await decision(
        journey,
        tid,
        to_organisation_id=OTHER,
        accepted=False,
        decline_reason=c.TransferDeclineReason.NO_CAPACITY,
    )
    status = await journey.status()
    assert only_transfer(status).status is c.TransferStatus.DECLINED
    assert [e.detail for e in events(status, "transfer_declined")] == [f"{tid}:no_capacity"]
    # A repeated event id is answered with the first answer, whatever happened since.
    again = await journey.update(c.UPDATE_TRANSFER_REDIRECT, redirect)
    assert again.duplicate
