"""Only those allowed can steer a journey (issue 12, items 2 and 3).

A client without the payload key (the SDK's default data converter) cannot
put anything into a journey: every Update it sends is refused. A client with
the key still needs an actor assertion signed by the rightful sending
service: unsigned, forged, expired, mis-scoped and replayed ones are refused
by the validators. Each refusal leaves the journey's state, its timeline and
what it asked of the collaborators unchanged, and afterwards a legitimate
Update and a due timer still work.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from masar import contract as c
from masar.contract.assertion import UPDATE_AUTHORITY
from masar.platform.assertions import Actor, AssertionSigner, registered_public_keys
from tests.support_assertions import every_update as every_shared_update
from tests.workflows.support import (
    SIGNERS,
    Journey,
    JourneyTestbed,
    events,
    new_event_id,
    recorded_data_converter,
)
from workflows.journey import AUTHENTICATED_UPDATES, SurvivorJourney
from workflows.policy import load_policy
from workflows.worker import build_worker

pytestmark = pytest.mark.asyncio(loop_scope="module")


def every_update(ref: c.ReferralView, now: datetime) -> dict[str, Any]:
    """One plausible event for each journey Update (unsigned): the shared
    ones, and the care unit's and legal aid's breach (issue 15) while they
    lack them."""
    found = every_shared_update(ref, now)
    found.setdefault(
        c.UPDATE_CLINICAL_CARE,
        c.ClinicalCareRecorded(
            event_id=new_event_id(),
            referral_id=ref.referral_id,
            sector=c.Sector.HEALTH,
            event=c.CareEvent.PEP_STARTED,
            at=now,
            recorded_at=now,
        ),
    )
    found.setdefault(
        c.UPDATE_BREACH,
        c.ProtectionOrderBreach(
            event_id=new_event_id(),
            referral_id=ref.referral_id,
            sector=c.Sector.LEGAL,
            at=now,
            recorded_at=now,
        ),
    )
    return found


SHELTER = c.Sector.SHELTER
COORDINATOR = Actor("coord-7", "coordinator", region="fes-meknes")


async def test_every_update_is_covered() -> None:
    names = {
        value
        for name, value in vars(c).items()
        if name.startswith("UPDATE_") and isinstance(value, str)
    }
    assert names == set(UPDATE_AUTHORITY)


class Snapshot:
    """What a refused Update must leave as it was."""

    def __init__(self, status: c.JourneyStatus, calls: int) -> None:
        self.status = status
        self.calls = calls

    @classmethod
    async def of(cls, journey: Journey) -> Snapshot:
        return cls(await journey.status(), len(journey.calls()))

    async def unchanged(self, journey: Journey) -> None:
        after = await journey.status()
        assert after == self.status
        assert len(journey.calls()) == self.calls


async def due_timer_still_works(bed: JourneyTestbed, journey: Journey, ref: c.ReferralView) -> None:
    """A legitimate decision goes through, and the check-in wait that it
    opens (12 h at high risk) reminds the provider half-way."""
    await journey.decide(ref)
    await journey.until(lambda s: s.referrals[0].status is c.ReferralStatus.ACCEPTED)
    reminders = len(journey.calls(c.SHELTER_REMIND_PROVIDER))
    await bed.skip(timedelta(hours=7))
    await journey.until_calls(c.SHELTER_REMIND_PROVIDER, reminders + 1)


async def refused(journey: Journey, name: str, event: Any) -> str | None:
    """Send a signed-or-not Update with the keyed client; its error type."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await journey.update(name, event, sign=False)
    return getattr(err.value.cause, "type", None)


async def test_a_client_without_the_key_cannot_steer_a_journey(
    bed: JourneyTestbed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="masar.platform.codec")
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    before = await Snapshot.of(journey)
    target = bed.client.service_client.config.target_host
    raw = await Client.connect(target, namespace=bed.client.namespace)
    handle = raw.get_workflow_handle(journey.handle.id)
    for name, event in every_update(ref, await bed.now()).items():
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):
            await handle.execute_update(name, event)
        # Not even with a well-formed assertion copied in: the payload is plaintext.
        signed = await journey.signed(name, event)
        with pytest.raises((WorkflowUpdateFailedError, RPCError)):
            await handle.execute_update(name, signed)
    await before.unchanged(journey)
    # Refused by the codec (plaintext), before any validator ran; nothing of
    # the payload in what it reported.
    refusals = [r for r in caplog.records if r.getMessage() == "payload refused"]
    assert len(refusals) >= 2 * len(UPDATE_AUTHORITY)
    assert {getattr(r, "reason", None) for r in refusals} == {"plaintext"}
    assert "anyone-from-any-region" not in caplog.text
    # Nor can it read the journey: its answers are ciphertext to that client.
    with pytest.raises(Exception, match="binary/encrypted"):
        await handle.query(c.QUERY_STATUS)
    await before.unchanged(journey)
    # The journey goes on: a legitimate decision, then a due timer.
    await due_timer_still_works(bed, journey, ref)


async def test_unsigned_forged_expired_misscoped_and_replayed_updates_are_refused(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    other = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    now = await bed.now()
    # A legitimate coordinator action first (replayed below).
    extension = c.DeadlineExtension(
        event_id=new_event_id(),
        target=ref.referral_id,
        extend_by_seconds=1800,
        coordinator_id="someone-else",  # the payload's word counts for nothing
        reason="provider_asked",
    )
    used = await journey.signed(c.UPDATE_EXTEND, extension, actor=COORDINATOR)
    await journey.update(c.UPDATE_EXTEND, used)
    status = await journey.status()
    (extended,) = events(status, "deadline_extended")
    assert extended.actor == "coord-7"  # from the verified assertion
    before = await Snapshot.of(journey)

    unauthenticated = c.ERR_UNAUTHENTICATED
    forbidden = c.ERR_FORBIDDEN
    for name, event in every_update(ref, now).items():
        # Unsigned.
        assert await refused(journey, name, event) == unauthenticated, name
        # Forged: signed by a key the journey does not know, under a known name.
        impostor = AssertionSigner.generate(SIGNERS["intake"].issuer)
        issuer_event = await journey.signed(name, event)
        assertion = issuer_event.assertion
        forged = dataclasses.replace(
            issuer_event,
            assertion=dataclasses.replace(
                impostor.sign(name, journey.case_id, event, COORDINATOR),
                key_id=assertion.key_id,
                issuer=assertion.issuer,
            ),
        )
        assert await refused(journey, name, forged) == unauthenticated, name
        # Tampered: a valid assertion with one claim changed.
        promoted = dataclasses.replace(
            issuer_event, assertion=dataclasses.replace(assertion, role="supervisor")
        )
        assert await refused(journey, name, promoted) == unauthenticated, name
        # Another payload under a valid assertion.
        swapped = dataclasses.replace(issuer_event, event_id=new_event_id())
        assert await refused(journey, name, swapped) == forbidden, name
        # Expired, and from the future.
        old = await journey.signed(name, event, at=now - timedelta(minutes=10))
        assert await refused(journey, name, old) == unauthenticated, name
        early = await journey.signed(name, event, at=now + timedelta(minutes=10))
        assert await refused(journey, name, early) == unauthenticated, name
        # Made for another case, and for another Update.
        elsewhere = await journey.signed(name, event, case_id=other.case_id)
        assert await refused(journey, name, elsewhere) == forbidden, name
        wrong_name = c.UPDATE_RISK if name != c.UPDATE_RISK else c.UPDATE_FOLLOW_UP
        misnamed = dataclasses.replace(
            event,
            assertion=SIGNERS[assertion.issuer].sign(
                wrong_name, journey.case_id, event, COORDINATOR, now=now
            ),
        )
        assert await refused(journey, name, misnamed) == forbidden, name
    await before.unchanged(journey)

    # Issuers and roles that may not send an Update.
    events_ = every_update(ref, now)
    decision = events_[c.UPDATE_REFERRAL_DECISION]
    as_intake = await journey.signed(c.UPDATE_REFERRAL_DECISION, decision, issuer="intake")
    assert await refused(journey, c.UPDATE_REFERRAL_DECISION, as_intake) == forbidden
    as_legal = await journey.signed(c.UPDATE_REFERRAL_DECISION, decision, issuer="legal")
    assert await refused(journey, c.UPDATE_REFERRAL_DECISION, as_legal) == forbidden
    # The legal service, for the shelter's referral, in the legal sector's name.
    legal_claim = dataclasses.replace(decision, sector=c.Sector.LEGAL)
    legal_signed = await journey.signed(c.UPDATE_REFERRAL_DECISION, legal_claim)
    assert await refused(journey, c.UPDATE_REFERRAL_DECISION, legal_signed) == c.ERR_INVALID
    as_shelter = await journey.signed(c.UPDATE_EXTEND, events_[c.UPDATE_EXTEND], issuer="shelter")
    assert await refused(journey, c.UPDATE_EXTEND, as_shelter) == forbidden
    officer = Actor("officer-1", "intake_officer", organisation_id="org-a")
    by_officer = await journey.signed(c.UPDATE_EXTEND, events_[c.UPDATE_EXTEND], actor=officer)
    assert await refused(journey, c.UPDATE_EXTEND, by_officer) == forbidden
    staff = Actor("staff-1", "shelter_staff", organisation_id="org-1")
    by_staff = await journey.signed(c.UPDATE_CONSENT, events_[c.UPDATE_CONSENT], actor=staff)
    assert await refused(journey, c.UPDATE_CONSENT, by_staff) == forbidden
    # A coordinator of another region, for every coordinator Update.
    elsewhere = Actor("coord-9", "coordinator", region="oriental")
    for name in (
        c.UPDATE_EXTEND,
        c.UPDATE_REASSIGN,
        c.UPDATE_CLOSURE_DECISION,
        c.UPDATE_TRANSFER_REDIRECT,
        c.UPDATE_RISK,
    ):
        foreign = await journey.signed(name, events_[name], actor=elsewhere)
        assert await refused(journey, name, foreign) == forbidden, name
    # Replayed: the very Update that went through, sent again.
    assert await refused(journey, c.UPDATE_EXTEND, used) == unauthenticated
    await before.unchanged(journey)

    # Afterwards a legitimate Update and a due timer still work.
    await due_timer_still_works(bed, journey, ref)


async def test_a_coordinator_with_an_emergency_grant_may_act_elsewhere(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    ref = await journey.pending_referral(SHELTER)
    granted = Actor("coord-9", "coordinator", region="oriental", grant_id="grant-1")
    extension = every_update(ref, await bed.now())[c.UPDATE_EXTEND]
    extension = dataclasses.replace(extension, extend_by_seconds=600)
    await journey.update(c.UPDATE_EXTEND, extension, actor=granted)
    (extended,) = events(await journey.status(), "deadline_extended")
    assert extended.actor == "coord-9"


async def test_medical_care_is_validated(bed: JourneyTestbed) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER])
    await journey.pending_referral(SHELTER)
    now = await bed.now()
    await journey.update(
        c.UPDATE_CLOSURE_REQUEST,
        c.ClosureRequest(event_id=new_event_id(), at=now, reason="needs_met"),
    )
    await journey.update(
        c.UPDATE_CLOSURE_DECISION,
        c.ClosureDecision(
            event_id=new_event_id(), approve=True, coordinator_id="coord-7", reason="done"
        ),
    )
    before = await Snapshot.of(journey)
    care = c.MedicalCareConfirmed(event_id=new_event_id(), item=c.ClinicalItem.PEP, at=now)
    signed = await journey.signed(c.UPDATE_MEDICAL_CARE, care)
    assert await refused(journey, c.UPDATE_MEDICAL_CARE, signed) == c.ERR_JOURNEY_CLOSED
    await before.unchanged(journey)


async def test_used_assertions_are_remembered_across_continue_as_new(
    bed: JourneyTestbed,
) -> None:
    journey = await bed.start(needs=[c.Need.SHELTER], max_history_events=40)
    await journey.pending_referral(SHELTER)
    first_run = journey.first_run_id
    contact = c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
    used = await journey.signed(c.UPDATE_FOLLOW_UP, contact)
    await journey.update(c.UPDATE_FOLLOW_UP, used)
    # More Updates until the journey continues as new.
    for _ in range(12):
        if await journey.run_id() != first_run:
            break
        await journey.update(
            c.UPDATE_FOLLOW_UP, c.FollowUpContact(event_id=new_event_id(), at=await bed.now())
        )
    assert await journey.run_id() != first_run
    assert await refused(journey, c.UPDATE_FOLLOW_UP, used) == c.ERR_UNAUTHENTICATED


async def test_a_journey_running_before_the_upgrade_keeps_working(
    bed: JourneyTestbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that started before assertions existed (no patch marker, a
    recorded policy without keys) still refuses unsigned Updates, loads the
    keys at its first signed one, refuses a forged one without changing
    anything, and takes legitimate ones."""
    original = workflow.patched

    def before_the_patch(patch_id: str) -> bool:
        return False if patch_id == AUTHENTICATED_UPDATES else original(patch_id)

    # The run's first policy has no keys (as an old worker recorded it).
    loads: list[int] = []

    def keys() -> list[c.IssuerKey]:
        loads.append(1)
        return [] if len(loads) == 1 else registered_public_keys()

    monkeypatch.setattr(workflow, "patched", before_the_patch)
    queue = "test-journey-old-run"
    # Unsandboxed: the patched `workflow.patched` lives in this process.
    async with build_worker(
        bed.client,
        load_policy(),
        task_queue=queue,
        issuer_keys=keys,
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        journey = await bed.start(needs=[c.Need.SHELTER], task_queue=queue)
        ref = await journey.pending_referral(SHELTER)
        risk = c.RiskChange(event_id=new_event_id(), risk=c.Risk.LOW, at=await bed.now())
        assert await refused(journey, c.UPDATE_RISK, risk) == c.ERR_UNAUTHENTICATED
        before = await Snapshot.of(journey)
        decision = every_update(ref, await bed.now())[c.UPDATE_REFERRAL_DECISION]
        impostor = AssertionSigner.generate("shelter")
        staff = Actor("staff-1", "shelter_staff", organisation_id="org-1")
        forged = dataclasses.replace(
            decision,
            assertion=dataclasses.replace(
                impostor.sign(
                    c.UPDATE_REFERRAL_DECISION,
                    journey.case_id,
                    decision,
                    staff,
                    now=await bed.now(),
                ),
                key_id=SIGNERS["shelter"].key_id,
            ),
        )
        # Accepted by the validator (no keys yet), refused by the handler.
        assert await refused(journey, c.UPDATE_REFERRAL_DECISION, forged) == (c.ERR_UNAUTHENTICATED)
        await before.unchanged(journey)
        assert len(loads) == 2  # the keys, loaded once in the run
        await journey.decide(ref)
        await journey.until(lambda s: s.referrals[0].status is c.ReferralStatus.ACCEPTED)
        await journey.update(c.UPDATE_RISK, risk)
        assert (await journey.status()).risk is c.Risk.LOW
        assert len(loads) == 2
        # Its history (with the keys loaded mid-run) replays.
        history = await journey.handle.fetch_history()
        replayer = Replayer(
            workflows=[SurvivorJourney],
            data_converter=recorded_data_converter(),
            workflow_runner=UnsandboxedWorkflowRunner(),
        )
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, repr(result.replay_failure)
        await journey.terminate()
