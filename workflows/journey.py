"""SurvivorJourney: one durable workflow per case (`journey-<case_id>`).

The rules live in `CaseFile` (workflows.casefile), which drives one
`ReferralTrack` per sector (workflows.tracks); updates are checked by
workflows.validation and the status is read by workflows.view. This module is
the Temporal side of them:

- updates (authenticated by their signed actor assertion and validated before
  anything is written — workflows.authentication, workflows.validation —
  deduplicated by event id) and the `status` query;
- the main loop, which sleeps until the next rung of the escalation ladder (or
  an update), climbs what is due and publishes the search attributes;
- one lane per collaborator (each sector, intake, and the network's for
  notifications — workflows.notices) performing the owed actions in order,
  each an activity with a bounded retry policy and an idempotency key fixed
  when the action was owed (workflows.lanework);
- continue-as-new, once the handlers have finished and no activity is under
  way, carrying the whole state.

The SLA policy reaches the journey through the local activity
`journey.load_policy` at the start of every run: the worker read and checked
the policy file when it started, the result is recorded in the history, so the
workflow stays deterministic and intake need not know the policy. The same
result carries the issuers' public assertion keys the run verifies with. Waits keep
the deadline computed when they opened; a new policy applies to new waits
from the next run on.

Determinism: no I/O, `workflow.now()` only; any later change of logic that
could alter a running history goes behind `workflow.patched(...)` and the
replay fixtures in tests/workflows/histories must keep passing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from masar.contract import (
        JOURNEY_WORKFLOW,
        QUERY_STATUS,
        SA_ESCALATION_LEVEL,
        SA_NEXT_DEADLINE,
        SA_PENDING_SECTORS,
        SA_REGION,
        SA_RISK,
        SA_STAGE,
        UPDATE_BREACH,
        UPDATE_CLINICAL_CARE,
        UPDATE_CLOSURE_DECISION,
        UPDATE_CLOSURE_REQUEST,
        UPDATE_CONSENT,
        UPDATE_EXTEND,
        UPDATE_FOLLOW_UP,
        UPDATE_MEDICAL_CARE,
        UPDATE_REASSIGN,
        UPDATE_REFERRAL_DECISION,
        UPDATE_REFERRAL_MILESTONE,
        UPDATE_REOPEN,
        UPDATE_RISK,
        ClinicalCareRecorded,
        ClosureDecision,
        ClosureRequest,
        ConsentChange,
        DeadlineExtension,
        FollowUpContact,
        JourneyInput,
        JourneyStatus,
        MedicalCareConfirmed,
        ProtectionOrderBreach,
        Reassignment,
        ReferralDecision,
        ReferralMilestone,
        ReopenRequest,
        RiskChange,
        UpdateResult,
    )

    # The notification contract's own module: imported in the workflow's
    # module so that the type hints of its dataclasses (activity results the
    # lanes decode, workflows.lanework) resolve inside the sandbox.
    from masar.contract.notify import AcknowledgementsResult, NotifyResult  # noqa: F401

    # The transfer contract's own module (its dataclasses' type hints resolve there).
    from masar.contract.transfer import (
        UPDATE_TRANSFER_DECISION,
        UPDATE_TRANSFER_REDIRECT,
        UPDATE_TRANSFER_REQUEST,
        TransferDecision,
        TransferRedirect,
        TransferRequest,
    )
    from workflows import authentication, validation, view
    from workflows.care import CARE_PATCH
    from workflows.casefile import CaseFile
    from workflows.lanework import LaneWork
    from workflows.notices import NOTIFICATIONS_PATCH
    from workflows.policy import LOAD_POLICY_ACTIVITY, SlaPolicy
    from workflows.state import (
        CARE_LANES,
        LANES,
        NETWORK_LANE,
        decode_state,
        encode_state,
    )

POLICY_RETRY = RetryPolicy(maximum_attempts=5)
MIN_SLEEP = 1.0  # seconds
# Runs started with it authenticate each Update again in its handler (and
# check medical care there); histories recorded before it replay without.
AUTHENTICATED_UPDATES = "masar-authenticated-updates"
# A run started before it loads the issuers' keys at its first Update that
# carries an assertion (no history recorded before it holds one).
ISSUER_KEYS_IN_RUN = "masar-issuer-keys-in-run"

# A business check of an Update against the case file (workflows.validation).
Check = Callable[[CaseFile, Any], None]
_no_check = validation.accept_any


SA_KEYS: dict[str, SearchAttributeKey[Any]] = {
    SA_STAGE: SearchAttributeKey.for_keyword(SA_STAGE),
    SA_RISK: SearchAttributeKey.for_keyword(SA_RISK),
    SA_REGION: SearchAttributeKey.for_keyword(SA_REGION),
    SA_ESCALATION_LEVEL: SearchAttributeKey.for_int(SA_ESCALATION_LEVEL),
    SA_PENDING_SECTORS: SearchAttributeKey.for_keyword_list(SA_PENDING_SECTORS),
    SA_NEXT_DEADLINE: SearchAttributeKey.for_datetime(SA_NEXT_DEADLINE),
}


@workflow.defn(name=JOURNEY_WORKFLOW)
class SurvivorJourney(LaneWork):
    @workflow.init
    def __init__(self, inp: JourneyInput) -> None:
        if inp.carried_state:
            self._case = CaseFile(decode_state(inp.carried_state, workflow.payload_converter()))
            self._fresh = False
        else:
            self._case = CaseFile.open(inp, workflow.info().workflow_id)
            self._fresh = True
        self._ready = False
        self._wake = False
        self._draining = False
        self._in_flight = 0
        # Outcome of actions an update handler waits for: key -> error type ("" = done).
        self._outcomes: dict[str, str] = {}
        self._published: dict[str, object] = {}
        # Set at the start of run(): does this run check assertions in handlers?
        self._authenticated = False
        self._keys_loaded_in_run = False
        self._loading_keys = False
        # The issuers' keys of this run (the carried policy's until it loads).
        policy = self._case.state.policy
        self._keys = authentication.IssuerKeys(policy.issuer_keys) if policy else None

    # --- the main loop ------------------------------------------------------------

    @workflow.run
    async def run(self, inp: JourneyInput) -> JourneyStatus:
        self._authenticated = workflow.patched(AUTHENTICATED_UPDATES)
        # Runs started with it tell people (workflows.notices).
        self._case.notices.on = workflow.patched(NOTIFICATIONS_PATCH)
        # Runs started with it refer to the care sectors (workflows.care).
        self._case.care = workflow.patched(CARE_PATCH)
        policy = await workflow.execute_local_activity(
            LOAD_POLICY_ACTIVITY,
            result_type=SlaPolicy,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=POLICY_RETRY,
        )
        self._case.state.policy = policy
        self._keys = authentication.IssuerKeys(policy.issuer_keys)
        if self._fresh:
            self._case.start(workflow.now())
        self._ready = True
        names = LANES + (CARE_LANES if self._case.care else ())
        if self._case.notices.on:
            names += (NETWORK_LANE,)
        lanes = [asyncio.create_task(self._lane(lane)) for lane in names]
        while True:
            now = workflow.now()
            self._case.tick(now)
            self._publish()
            if self._case.finished(now):
                break
            if self._should_continue_as_new():
                await self._continue_as_new(inp)
            wake_at = self._case.next_wakeup()
            timeout = None
            if wake_at is not None:
                timeout = max((wake_at - now).total_seconds(), MIN_SLEEP)
            self._wake = False
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._wake, timeout=timeout)
        # Closed for the whole retention period: finish what is owed, then complete.
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    not self._case.state.actions
                    and self._in_flight == 0
                    and workflow.all_handlers_finished()
                ),
                timeout=timedelta(days=1),
            )
        for task in lanes:
            task.cancel()
        return view.status(self._case)

    def _publish(self) -> None:
        """Upsert the search attributes that changed."""
        values = view.search_attributes(self._case)
        updates: list[SearchAttributeUpdate[Any]] = []
        for name, value in values.items():
            if name in self._published and self._published[name] == value:
                continue
            key = SA_KEYS[name]
            if value is None or value == []:
                updates.append(key.value_unset())
            else:
                updates.append(key.value_set(value))
        if updates:
            workflow.upsert_search_attributes(updates)
        self._published = values

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        limit = self._case.state.max_history_events
        return limit is not None and info.get_current_history_length() >= limit

    async def _continue_as_new(self, inp: JourneyInput) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._draining = True
        await workflow.wait_condition(
            lambda: self._in_flight == 0 and workflow.all_handlers_finished()
        )
        state = self._case.state
        state.runs += 1
        carried = encode_state(state, workflow.payload_converter())
        workflow.continue_as_new(dataclasses.replace(inp, carried_state=carried))

    # --- updates ----------------------------------------------------------------------
    # Authenticated (workflows.authentication: who checks what, when, and how
    # runs started before the patch keep working) and validated
    # (workflows.validation) by each validator, again in the handler.

    def _verifying_keys(self) -> authentication.IssuerKeys | None:
        if self._authenticated or self._keys_loaded_in_run:
            return self._keys
        return None  # the handler verifies, once it has loaded the keys

    def _authenticate(self, name: str, event: Any, *, at_validation: bool) -> None:
        authentication.authenticate(
            self._case,
            self._verifying_keys() if at_validation else self._keys,
            name,
            event,
            workflow.now() if at_validation else None,
        )

    def _validate(self, name: str, event: Any, check: Check) -> None:
        self._authenticate(name, event, at_validation=True)
        check(self._case, event)

    async def _apply(
        self, name: str, event: Any, check: Check, apply: Callable[[Any, datetime], None]
    ) -> UpdateResult:
        event = await self._admit(name, event)
        previous = self._case.answered(event.event_id)
        if previous is not None:
            return previous
        # Validated again: the journey may have moved while this update waited.
        check(self._case, event)
        apply(event, workflow.now())
        self._wake = True
        return self._case.answer(event.event_id)

    async def _admit(self, name: str, event: Any) -> Any:
        """In the handler, once the run is ready: check the assertion again,
        keep its id against replay, and take the coordinator from it, never
        from the payload."""
        await workflow.wait_condition(lambda: self._ready)
        assertion = authentication.assertion_of(event)
        if assertion is not None and not self._authenticated:
            await self._load_keys_in_run()
        if self._authenticated or assertion is not None:
            self._authenticate(name, event, at_validation=False)
        if assertion is None:
            return event
        authentication.remember(self._case, assertion, workflow.now())
        if hasattr(event, "coordinator_id"):
            event = dataclasses.replace(event, coordinator_id=assertion.actor_id)
        return event

    async def _load_keys_in_run(self) -> None:
        """A run started before the patch: load the issuers' keys now (once)."""
        if self._keys_loaded_in_run:
            return
        if self._loading_keys:
            await workflow.wait_condition(lambda: self._keys_loaded_in_run)
            return
        self._loading_keys = True
        if workflow.patched(ISSUER_KEYS_IN_RUN):
            policy = await workflow.execute_local_activity(
                LOAD_POLICY_ACTIVITY,
                result_type=SlaPolicy,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=POLICY_RETRY,
            )
            self._keys = authentication.IssuerKeys(policy.issuer_keys)
        self._keys_loaded_in_run = True

    def _medical_check(self) -> Check:
        # Before the patch the handler checked nothing: old histories replay so.
        return validation.validate_medical_care if self._authenticated else _no_check

    @workflow.update(name=UPDATE_REFERRAL_DECISION)
    async def referral_decision(self, event: ReferralDecision) -> UpdateResult:
        return await self._apply(
            UPDATE_REFERRAL_DECISION,
            event,
            validation.validate_decision,
            lambda e, now: self._case.apply_decision(e, now),
        )

    @referral_decision.validator
    def _check_referral_decision(self, event: ReferralDecision) -> None:
        self._validate(UPDATE_REFERRAL_DECISION, event, validation.validate_decision)

    @workflow.update(name=UPDATE_REFERRAL_MILESTONE)
    async def referral_milestone(self, event: ReferralMilestone) -> UpdateResult:
        return await self._apply(
            UPDATE_REFERRAL_MILESTONE,
            event,
            validation.validate_milestone,
            lambda e, now: self._case.apply_milestone(e, now),
        )

    @referral_milestone.validator
    def _check_referral_milestone(self, event: ReferralMilestone) -> None:
        self._validate(UPDATE_REFERRAL_MILESTONE, event, validation.validate_milestone)

    @workflow.update(name=UPDATE_CONSENT)
    async def consent_changed(self, event: ConsentChange) -> UpdateResult:
        return await self._apply(
            UPDATE_CONSENT, event, _no_check, lambda e, now: self._case.apply_consent(e, now)
        )

    @consent_changed.validator
    def _check_consent(self, event: ConsentChange) -> None:
        self._validate(UPDATE_CONSENT, event, _no_check)

    @workflow.update(name=UPDATE_RISK)
    async def risk_reassessed(self, event: RiskChange) -> UpdateResult:
        return await self._apply(
            UPDATE_RISK, event, _no_check, lambda e, now: self._case.apply_risk(e, now)
        )

    @risk_reassessed.validator
    def _check_risk(self, event: RiskChange) -> None:
        self._validate(UPDATE_RISK, event, _no_check)

    @workflow.update(name=UPDATE_FOLLOW_UP)
    async def follow_up_recorded(self, event: FollowUpContact) -> UpdateResult:
        return await self._apply(
            UPDATE_FOLLOW_UP,
            event,
            validation.validate_follow_up,
            lambda e, now: self._case.apply_follow_up(e, now),
        )

    @follow_up_recorded.validator
    def _check_follow_up(self, event: FollowUpContact) -> None:
        self._validate(UPDATE_FOLLOW_UP, event, validation.validate_follow_up)

    @workflow.update(name=UPDATE_MEDICAL_CARE)
    async def medical_care_confirmed(self, event: MedicalCareConfirmed) -> UpdateResult:
        return await self._apply(
            UPDATE_MEDICAL_CARE,
            event,
            self._medical_check(),
            lambda e, now: self._case.apply_medical_care(e, now),
        )

    @medical_care_confirmed.validator
    def _check_medical_care(self, event: MedicalCareConfirmed) -> None:
        self._validate(UPDATE_MEDICAL_CARE, event, validation.validate_medical_care)

    # Sent by the health service (workflows.care) and by legal aid (a breach):
    # Updates that no history recorded before them can hold, so they need no
    # patch marker.
    @workflow.update(name=UPDATE_CLINICAL_CARE)
    async def clinical_care_recorded(self, event: ClinicalCareRecorded) -> UpdateResult:
        return await self._apply(
            UPDATE_CLINICAL_CARE,
            event,
            validation.validate_clinical_care,
            lambda e, now: self._case.apply_clinical_care(e, now),
        )

    @clinical_care_recorded.validator
    def _check_clinical_care(self, event: ClinicalCareRecorded) -> None:
        self._validate(UPDATE_CLINICAL_CARE, event, validation.validate_clinical_care)

    # Sent by the legal service: a protection order was breached.
    @workflow.update(name=UPDATE_BREACH)
    async def protection_order_breached(self, event: ProtectionOrderBreach) -> UpdateResult:
        return await self._apply(
            UPDATE_BREACH,
            event,
            validation.validate_breach,
            lambda e, now: self._case.apply_breach(e, now),
        )

    @protection_order_breached.validator
    def _check_breach(self, event: ProtectionOrderBreach) -> None:
        self._validate(UPDATE_BREACH, event, validation.validate_breach)

    @workflow.update(name=UPDATE_CLOSURE_REQUEST)
    async def closure_requested(self, event: ClosureRequest) -> UpdateResult:
        return await self._apply(
            UPDATE_CLOSURE_REQUEST,
            event,
            validation.validate_closure_request,
            lambda e, now: self._case.apply_closure_request(e, now),
        )

    @closure_requested.validator
    def _check_closure_request(self, event: ClosureRequest) -> None:
        self._validate(UPDATE_CLOSURE_REQUEST, event, validation.validate_closure_request)

    @workflow.update(name=UPDATE_REOPEN)
    async def reopen(self, event: ReopenRequest) -> UpdateResult:
        return await self._apply(
            UPDATE_REOPEN,
            event,
            validation.validate_reopen,
            lambda e, now: self._case.apply_reopen(e, now),
        )

    @reopen.validator
    def _check_reopen(self, event: ReopenRequest) -> None:
        self._validate(UPDATE_REOPEN, event, validation.validate_reopen)

    @workflow.update(name=UPDATE_EXTEND)
    async def extend_deadline(self, event: DeadlineExtension) -> UpdateResult:
        return await self._apply(
            UPDATE_EXTEND,
            event,
            validation.validate_extension,
            lambda e, now: self._case.apply_extension(e, now),
        )

    @extend_deadline.validator
    def _check_extension(self, event: DeadlineExtension) -> None:
        self._validate(UPDATE_EXTEND, event, validation.validate_extension)

    @workflow.update(name=UPDATE_CLOSURE_DECISION)
    async def decide_closure(self, event: ClosureDecision) -> UpdateResult:
        return await self._apply(
            UPDATE_CLOSURE_DECISION,
            event,
            validation.validate_closure_decision,
            lambda e, now: self._case.apply_closure_decision(e, now),
        )

    @decide_closure.validator
    def _check_closure_decision(self, event: ClosureDecision) -> None:
        self._validate(UPDATE_CLOSURE_DECISION, event, validation.validate_closure_decision)

    @workflow.update(name=UPDATE_REASSIGN)
    async def reassign_referral(self, event: Reassignment) -> UpdateResult:
        """Answers once the named provider has the referral (or refused it)."""
        event = await self._admit(UPDATE_REASSIGN, event)
        previous = self._case.answered(event.event_id)
        if previous is not None:
            return previous
        validation.validate_reassign(self._case, event)
        action = self._case.apply_reassign(event, workflow.now())
        self._wake = True
        await workflow.wait_condition(lambda: action.key in self._outcomes)
        error_type = self._outcomes.pop(action.key)
        if error_type:
            raise ApplicationError(
                "provider_id: the sector did not take the referral",
                type=error_type,
                non_retryable=True,
            )
        return self._case.answer(event.event_id)

    @reassign_referral.validator
    def _check_reassign(self, event: Reassignment) -> None:
        self._validate(UPDATE_REASSIGN, event, validation.validate_reassign)

    # Transfers between organisations (workflows.transfers): updates that no
    # history recorded before them can hold, so they need no patch marker.

    @workflow.update(name=UPDATE_TRANSFER_REQUEST)
    async def transfer_requested(self, event: TransferRequest) -> UpdateResult:
        return await self._apply(
            UPDATE_TRANSFER_REQUEST,
            event,
            validation.validate_transfer_request,
            lambda e, now: self._case.apply_transfer_request(e, now),
        )

    @transfer_requested.validator
    def _check_transfer_request(self, event: TransferRequest) -> None:
        self._validate(UPDATE_TRANSFER_REQUEST, event, validation.validate_transfer_request)

    @workflow.update(name=UPDATE_TRANSFER_DECISION)
    async def transfer_decided(self, event: TransferDecision) -> UpdateResult:
        return await self._apply(
            UPDATE_TRANSFER_DECISION,
            event,
            validation.validate_transfer_decision,
            lambda e, now: self._case.apply_transfer_decision(e, now),
        )

    @transfer_decided.validator
    def _check_transfer_decision(self, event: TransferDecision) -> None:
        self._validate(UPDATE_TRANSFER_DECISION, event, validation.validate_transfer_decision)

    @workflow.update(name=UPDATE_TRANSFER_REDIRECT)
    async def transfer_redirected(self, event: TransferRedirect) -> UpdateResult:
        return await self._apply(
            UPDATE_TRANSFER_REDIRECT,
            event,
            validation.validate_transfer_redirect,
            lambda e, now: self._case.apply_transfer_redirect(e, now),
        )

    @transfer_redirected.validator
    def _check_transfer_redirect(self, event: TransferRedirect) -> None:
        self._validate(UPDATE_TRANSFER_REDIRECT, event, validation.validate_transfer_redirect)

    # --- query ------------------------------------------------------------------------

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> JourneyStatus:
        return view.status(self._case)
