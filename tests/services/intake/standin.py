"""A stand-in for the survivor journey, registered under the journey's real
name (contract.JOURNEY_WORKFLOW) on a test's own task queue: it records the
JourneyInput and every update intake sends, and refuses a reopen while the
case is open, as the real journey does (and a transfer to an organisation
named "org-refused", to exercise the undo). Unsandboxed: it is tiny."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import (
    ClosureRequest,
    ConsentChange,
    FollowUpContact,
    JourneyInput,
    MedicalCareConfirmed,
    ReopenRequest,
    RiskChange,
    TransferDecision,
    TransferRedirect,
    TransferRequest,
    UpdateResult,
)

# A transfer to this organisation is refused by the stand-in's validator.
REFUSED_ORGANISATION = "org-refused"


@dataclass
class Seen:
    update: str
    event_id: str
    payload: dict[str, Any] = field(default_factory=dict)


@workflow.defn(name=contract.JOURNEY_WORKFLOW, sandboxed=False)
class StandInJourney:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.done = False

    @workflow.run
    async def run(self, journey: JourneyInput) -> str:
        await workflow.wait_condition(lambda: self.done)
        return journey.case_id

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def updates(self) -> list[Seen]:
        return self.seen

    def _record(self, name: str, event: Any) -> UpdateResult:
        payload = {k: str(v) for k, v in vars(event).items()}
        self.seen.append(Seen(update=name, event_id=event.event_id, payload=payload))
        return UpdateResult(event_id=event.event_id)

    @workflow.update(name=contract.UPDATE_CONSENT)
    def consent(self, event: ConsentChange) -> UpdateResult:
        return self._record(contract.UPDATE_CONSENT, event)

    @workflow.update(name=contract.UPDATE_RISK)
    def risk(self, event: RiskChange) -> UpdateResult:
        return self._record(contract.UPDATE_RISK, event)

    @workflow.update(name=contract.UPDATE_FOLLOW_UP)
    def follow_up(self, event: FollowUpContact) -> UpdateResult:
        return self._record(contract.UPDATE_FOLLOW_UP, event)

    @workflow.update(name=contract.UPDATE_MEDICAL_CARE)
    def medical(self, event: MedicalCareConfirmed) -> UpdateResult:
        return self._record(contract.UPDATE_MEDICAL_CARE, event)

    @workflow.update(name=contract.UPDATE_CLOSURE_REQUEST)
    def closure(self, event: ClosureRequest) -> UpdateResult:
        return self._record(contract.UPDATE_CLOSURE_REQUEST, event)

    @workflow.update(name=contract.UPDATE_REOPEN)
    def reopen(self, event: ReopenRequest) -> UpdateResult:
        return self._record(contract.UPDATE_REOPEN, event)

    @reopen.validator
    def check_reopen(self, event: ReopenRequest) -> None:
        raise ApplicationError("the case is not closed", type="CaseNotClosed")

    @workflow.update(name=contract.UPDATE_TRANSFER_REQUEST)
    def transfer_requested(self, event: TransferRequest) -> UpdateResult:
        return self._record(contract.UPDATE_TRANSFER_REQUEST, event)

    @transfer_requested.validator
    def check_transfer_request(self, event: TransferRequest) -> None:
        if event.to_organisation_id == REFUSED_ORGANISATION:
            raise ApplicationError("refused", type=contract.ERR_INVALID)

    @workflow.update(name=contract.UPDATE_TRANSFER_DECISION)
    def transfer_decided(self, event: TransferDecision) -> UpdateResult:
        return self._record(contract.UPDATE_TRANSFER_DECISION, event)

    @workflow.update(name=contract.UPDATE_TRANSFER_REDIRECT)
    def transfer_redirected(self, event: TransferRedirect) -> UpdateResult:
        return self._record(contract.UPDATE_TRANSFER_REDIRECT, event)
