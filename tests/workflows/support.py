"""Shared by the workflow tests and by record_histories.py.

Fakes of the journey's collaborators (the sector services' activities and
intake's escalation inbox) registered under the contract's names on the
contract's task queues, a time-skipping environment with Masar's search
attributes registered, and helpers to start and drive journeys.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import secrets
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import IndexedValueType, WorkflowExecutionStatus
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from masar import contract as c
from masar.contract.assertion import SECTOR_STAFF_ROLES, UPDATE_AUTHORITY
from masar.platform.assertions import Actor, AssertionSigner, register_public_key
from masar.platform.crypto import Keyring
from masar.platform.temporal import client_options, data_converter
from workflows.policy import SlaPolicy, load_policy, parse_policy
from workflows.worker import build_worker

# A fixed key, so recorded histories can be decoded by the replay test.
TEST_KEYRING = Keyring(
    active_id="test", keys={"test": hashlib.sha256(b"masar workflow tests").digest()}
)
JOURNEY_QUEUE = "test-journey"
INDEXED = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}


def recorded_data_converter() -> Any:
    return data_converter(keyring=TEST_KEYRING)


# The sending services' assertion keys: the journey workers of this process
# trust them (masar.platform.assertions.register_public_key).
SIGNERS: dict[str, AssertionSigner] = {
    name: AssertionSigner.generate(name)
    for name in ("intake", "shelter", "legal", "employment", "health", "psychosocial")
}
for _signer in SIGNERS.values():
    register_public_key(_signer.public_key)
REGION = "fes-meknes"


def default_actor(update_name: str, event: Any) -> tuple[str, Actor]:
    """(issuer, actor) as the rightful sender of `update_name` would assert:
    the referral's sector staff, a coordinator of the region, an intake officer."""
    if UPDATE_AUTHORITY[update_name].sector:
        sector = c.Sector(event.sector).value
        return sector, Actor("staff-1", SECTOR_STAFF_ROLES[sector], organisation_id="org-1")
    if hasattr(event, "coordinator_id"):
        return "intake", Actor(event.coordinator_id, "coordinator", region=REGION)
    return "intake", Actor("officer-1", "intake_officer", organisation_id="org-a")


async def register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={name: INDEXED[kind] for name, kind in c.SEARCH_ATTRIBUTES.items()},
        )
    )


def case_of_key(idempotency_key: str) -> str:
    """Idempotency keys start with the workflow id: journey-<case_id>/..."""
    workflow_id = idempotency_key.split("/", 1)[0]
    return workflow_id.removeprefix("journey-")


@dataclass
class Call:
    activity: str
    arg: Any


@dataclass
class CaseScript:
    """How the fake sectors treat one case."""

    providers: dict[str, list[str]] = field(
        default_factory=lambda: {
            "shelter": ["shelter-a", "shelter-b", "shelter-c"],
            "legal": ["legal-a", "legal-b"],
            "employment": ["programme-a", "programme-b"],
            "health": ["unit-a", "unit-b"],
            "psychosocial": ["assoc-a", "assoc-b"],
        }
    )
    # activity name -> number of calls that fail as if the service were down
    outages: dict[str, int] = field(default_factory=dict)
    # activity name -> number of calls that never answer (the journey's
    # start-to-close timeout ends them; the worker cancels them at shutdown)
    hangs: dict[str, int] = field(default_factory=dict)
    # activity name -> number of calls that wait until the test sets `release`
    holds: dict[str, int] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # set when a call waits
    # The network: notification kinds that reach nobody (NotifyResult.undelivered),
    # and the sector's organisation of each provider (ReferralCreated.organisation_id).
    unreachable: set[str] = field(default_factory=set)
    organisations: dict[str, str] = field(
        default_factory=lambda: {
            "shelter-a": "org-5be1700000a1",
            "shelter-b": "org-5be1700000b2",
            "shelter-c": "org-5be1700000c3",
        }
    )
    # The network: acknowledgements of the case's notifications so far.
    acknowledgements: list[c.Acknowledgement] = field(default_factory=list)


class FakeCollaborators:
    """Sector activities and intake's inbox: record every call, return ids."""

    def __init__(self) -> None:
        self.calls: dict[str, list[Call]] = defaultdict(list)
        self.scripts: dict[str, CaseScript] = {}
        self._referrals: dict[str, c.ReferralCreated] = {}  # idempotency key -> result
        self._case_of_referral: dict[str, str] = {}

    def script(self, case_id: str) -> CaseScript:
        return self.scripts.setdefault(case_id, CaseScript())

    def of(self, case_id: str, name: str | None = None) -> list[Call]:
        calls = self.calls[case_id]
        return [call for call in calls if name is None or call.activity == name]

    async def _record(self, case_id: str, name: str, arg: Any) -> None:
        self.calls[case_id].append(Call(name, arg))
        script = self.script(case_id)
        if script.outages.get(name, 0) > 0:
            script.outages[name] -= 1
            raise RuntimeError("service unavailable")
        if script.hangs.get(name, 0) > 0:
            script.hangs[name] -= 1
            await asyncio.Event().wait()
        if script.holds.get(name, 0) > 0:
            script.holds[name] -= 1
            script.held.set()
            await script.release.wait()

    def activities(self) -> dict[str, list[Callable[..., Any]]]:
        """Activity callables per task queue."""
        by_queue: dict[str, list[Callable[..., Any]]] = {}
        for sector in c.Sector:
            by_queue[c.SECTOR_TASK_QUEUES[sector.value]] = self._sector_activities(sector)
        by_queue[c.SECTOR_TASK_QUEUES["legal"]].append(self._certificate_activity())
        by_queue[c.SECTOR_TASK_QUEUES["intake"]] = [
            self._escalation_activity(),
            self._transfer_rung_activity(),
        ]
        by_queue[c.NETWORK_TASK_QUEUE] = self._network_activities()
        return by_queue

    def notifications(self, case_id: str) -> list[c.NotifyEvent]:
        """Every `network.notify` call made for the case, in order."""
        return [call.arg for call in self.of(case_id, c.NETWORK_NOTIFY)]

    def acknowledge(self, case_id: str, key: str, account_id: str, at: datetime) -> None:
        """A recipient acknowledges the notification with this key (the fake network's)."""
        self.script(case_id).acknowledgements.append(
            c.Acknowledgement(
                idempotency_key=key,
                notification_id=f"ntf-{hashlib.sha256(key.encode()).hexdigest()[:12]}",
                account_id=account_id,
                role="coordinator",
                organisation_id="org-c00d000000f1",
                acknowledged_at=at,
            )
        )

    def _network_activities(self) -> list[Callable[..., Any]]:
        fakes = self
        notified: dict[str, c.NotifyResult] = {}

        @activity.defn(name=c.NETWORK_NOTIFY)
        async def notify(event: c.NotifyEvent) -> c.NotifyResult:
            await fakes._record(event.case_id, c.NETWORK_NOTIFY, event)
            if event.idempotency_key in notified:
                return dataclasses.replace(notified[event.idempotency_key], already=True)
            nobody = event.kind in fakes.script(event.case_id).unreachable
            result = c.NotifyResult(
                notification_id=f"ntf-{secrets.token_hex(6)}",
                recipients=0 if nobody else 2,
                undelivered=nobody,
                escalated_to=2 if nobody else 0,
            )
            notified[event.idempotency_key] = result
            return result

        @activity.defn(name=c.NETWORK_ACKNOWLEDGEMENTS)
        async def acknowledgements(query: c.AcknowledgementsQuery) -> c.AcknowledgementsResult:
            await fakes._record(query.case_id, c.NETWORK_ACKNOWLEDGEMENTS, query)
            keys = set(query.idempotency_keys)
            return c.AcknowledgementsResult(
                acknowledgements=[
                    ack
                    for ack in fakes.script(query.case_id).acknowledgements
                    if not keys or ack.idempotency_key in keys
                ]
            )

        return [notify, acknowledgements]

    def _sector_activities(self, sector: c.Sector) -> list[Callable[..., Any]]:
        fakes = self
        names = c.SECTOR_ACTIVITIES[sector]

        @activity.defn(name=names.request_referral)
        async def request_referral(req: c.ReferralRequest) -> c.ReferralCreated:
            await fakes._record(req.case_id, names.request_referral, req)
            if req.idempotency_key in fakes._referrals:
                return fakes._referrals[req.idempotency_key]
            script = fakes.script(req.case_id)
            pool = script.providers.get(sector.value, [])
            if req.provider_id is not None:
                eligible = [req.provider_id] if req.provider_id in pool else []
            else:
                eligible = [p for p in pool if p not in req.exclude_provider_ids]
            if not eligible:
                raise ApplicationError(
                    "no eligible provider", type=c.ERR_NO_PROVIDER, non_retryable=True
                )
            created = c.ReferralCreated(
                referral_id=c.new_referral_id(sector),
                provider_id=eligible[0],
                region=req.region,
                organisation_id=script.organisations.get(eligible[0], ""),
            )
            fakes._referrals[req.idempotency_key] = created
            fakes._case_of_referral[created.referral_id] = req.case_id
            return created

        @activity.defn(name=names.remind_provider)
        async def remind_provider(reminder: c.ProviderReminder) -> None:
            await fakes._record(
                case_of_key(reminder.idempotency_key), names.remind_provider, reminder
            )

        @activity.defn(name=names.close_referral)
        async def close_referral(closure: c.ReferralClosure) -> None:
            await fakes._record(case_of_key(closure.idempotency_key), names.close_referral, closure)

        @activity.defn(name=names.purge_case)
        async def purge_case(purge: c.CasePurge) -> c.PurgeResult:
            await fakes._record(purge.case_id, names.purge_case, purge)
            return c.PurgeResult(referrals_withdrawn=1, records_purged=2)

        return [request_referral, remind_provider, close_referral, purge_case]

    def _certificate_activity(self) -> Callable[..., Any]:
        fakes = self

        @activity.defn(name=c.LEGAL_NOTE_CERTIFICATE)
        async def note_certificate(notice: c.CertificateNotice) -> None:
            await fakes._record(
                case_of_key(notice.idempotency_key), c.LEGAL_NOTE_CERTIFICATE, notice
            )

        return note_certificate

    def _escalation_activity(self) -> Callable[..., Any]:
        fakes = self

        @activity.defn(name=c.INTAKE_RECORD_ESCALATION)
        async def record_escalation(notice: c.EscalationNotice) -> None:
            await fakes._record(notice.case_id, c.INTAKE_RECORD_ESCALATION, notice)

        return record_escalation

    def _transfer_rung_activity(self) -> Callable[..., Any]:
        fakes = self

        @activity.defn(name=c.INTAKE_RECORD_TRANSFER_RUNG)
        async def record_transfer_rung(notice: c.TransferRungNotice) -> None:
            await fakes._record(notice.case_id, c.INTAKE_RECORD_TRANSFER_RUNG, notice)

        return record_transfer_rung


# Activity names, for assertions: the contract's written-out names.
ESCALATION = c.INTAKE_RECORD_ESCALATION


@dataclass
class JourneyTestbed:
    env: WorkflowEnvironment
    fakes: FakeCollaborators
    task_queue: str = JOURNEY_QUEUE
    started: list[Journey] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def start(
        self,
        *,
        risk: c.Risk = c.Risk.HIGH,
        needs: Sequence[c.Need] = (c.Need.SHELTER,),
        consents: Sequence[c.Sector] | None = None,
        task_queue: str | None = None,
        script: CaseScript | None = None,
        case_id: str | None = None,
        **fields: Any,
    ) -> Journey:
        case_id = case_id or c.new_case_id()
        if script is not None:
            self.fakes.scripts[case_id] = script
        if consents is None:
            consents = [c.Sector(n.value) for n in needs if n.value in set(c.Sector)]
        inp = c.JourneyInput(
            case_id=case_id,
            region=REGION,
            risk=risk,
            needs=list(needs),
            consents=list(consents),
            opened_at=fields.pop("opened_at", None) or await self.now(),
            shelter=c.ShelterNeeds(household_size=2, children=1),
            **fields,
        )
        started = await self.client.start_workflow(
            c.JOURNEY_WORKFLOW,
            inp,
            id=c.journey_workflow_id(case_id),
            task_queue=task_queue or self.task_queue,
        )
        # Like intake and the outbox: by workflow id only, so that updates and
        # queries follow the journey across continue-as-new.
        handle = self.client.get_workflow_handle(started.id, result_type=c.JourneyStatus)
        journey = Journey(self, handle, case_id)
        journey.first_run_id = started.first_execution_run_id or started.run_id
        self.started.append(journey)
        return journey

    async def skip(self, duration: timedelta) -> None:
        """Skip virtual time. The test server occasionally answers a long skip
        with "Timeout expired" on a loaded machine: skip what is left then."""
        target = await self.now() + duration
        for _ in range(3):
            remaining = target - await self.now()
            if remaining <= timedelta(0):
                return
            try:
                await self.env.sleep(remaining)
                return
            except RPCError as err:
                if "Timeout expired" not in str(err):
                    raise
        raise AssertionError("the test server did not skip time")


class Journey:
    """One journey under test: updates, status polling, calls made for it."""

    def __init__(self, bed: JourneyTestbed, handle: WorkflowHandle[Any, Any], case_id: str):
        self.bed = bed
        self.handle = handle
        self.case_id = case_id
        self.first_run_id: str | None = None

    async def status(self) -> c.JourneyStatus:
        return await self.handle.query(c.QUERY_STATUS, result_type=c.JourneyStatus)

    async def until(
        self, predicate: Callable[[c.JourneyStatus], bool], *, within: float = 15.0
    ) -> c.JourneyStatus:
        """Poll the status query (real time, short steps) until `predicate` holds."""
        deadline = time.monotonic() + within
        status = None
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                status = await self.status()
                if predicate(status):
                    return status
            await asyncio.sleep(0.05)
        raise AssertionError(f"condition not reached; last status: {status}")

    async def until_calls(self, name: str, count: int, *, within: float = 15.0) -> list[Call]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            calls = self.calls(name)
            if len(calls) >= count:
                return calls
            await asyncio.sleep(0.05)
        raise AssertionError(f"{name}: {len(self.calls(name))} calls, expected {count}")

    async def execution(self) -> Any:
        """The latest run's WorkflowExecutionInfo (raw: see search_attributes)."""
        request = DescribeWorkflowExecutionRequest(
            namespace=self.bed.client.namespace,
            execution=WorkflowExecution(workflow_id=self.handle.id),
        )
        response = await self.bed.client.workflow_service.describe_workflow_execution(request)
        return response.workflow_execution_info

    async def running(self) -> bool:
        info = await self.execution()
        return bool(info.status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING)

    async def run_id(self) -> str:
        return str((await self.execution()).execution.run_id)

    async def search_attributes(self) -> dict[str, Any]:
        """Masar's search attributes that are set (decoded here: the test
        server keeps unset ones as null payloads, which describe() rejects)."""
        fields = (await self.execution()).search_attributes.indexed_fields
        values: dict[str, Any] = {}
        for name, payload in fields.items():
            if (
                name not in c.SEARCH_ATTRIBUTES
                or payload.metadata.get("encoding") == b"binary/null"
            ):
                continue
            value = json.loads(payload.data)
            if c.SEARCH_ATTRIBUTES[name] == "Datetime":
                value = datetime.fromisoformat(value)
            values[name] = value
        return values

    async def until_search_attributes(
        self, predicate: Callable[[dict[str, Any]], bool], *, within: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        values: dict[str, Any] = {}
        while time.monotonic() < deadline:
            values = await self.search_attributes()
            if predicate(values):
                return values
            await asyncio.sleep(0.05)
        raise AssertionError(f"search attributes not reached; last: {values}")

    def calls(self, name: str | None = None) -> list[Call]:
        return self.bed.fakes.of(self.case_id, name)

    async def update(
        self, name: str, event: Any, *, sign: bool = True, actor: Actor | None = None
    ) -> c.UpdateResult:
        """Send an Update as its rightful sender would: signed by the sending
        service for `actor` (by default `default_actor`), at the server's time."""
        if sign and getattr(event, "assertion", None) is None:
            event = await self.signed(name, event, actor=actor)
        result: c.UpdateResult = await self.handle.execute_update(
            name, event, result_type=c.UpdateResult
        )
        return result

    async def signed(
        self,
        name: str,
        event: Any,
        *,
        actor: Actor | None = None,
        issuer: str | None = None,
        case_id: str | None = None,
        at: datetime | None = None,
    ) -> Any:
        """`event` with an assertion signed as for `name` on this journey."""
        default_issuer, default = default_actor(name, event)
        signer = SIGNERS[issuer or default_issuer]
        assertion = signer.sign(
            name,
            case_id or self.case_id,
            event,
            actor or default,
            now=at or await self.bed.now(),
        )
        return dataclasses.replace(event, assertion=assertion)

    async def referral(self, sector: c.Sector, *, attempt: int = -1) -> c.ReferralView:
        status = await self.until(lambda s: any(r.sector is sector for r in s.referrals))
        return [r for r in status.referrals if r.sector is sector][attempt]

    async def pending_referral(self, sector: c.Sector) -> c.ReferralView:
        status = await self.until(
            lambda s: any(
                r.sector is sector and r.status is c.ReferralStatus.PENDING for r in s.referrals
            )
        )
        return next(
            r
            for r in status.referrals
            if r.sector is sector and r.status is c.ReferralStatus.PENDING
        )

    async def decide(
        self, ref: c.ReferralView, *, accepted: bool = True, reason: str | None = None
    ) -> c.UpdateResult:
        return await self.update(
            c.UPDATE_REFERRAL_DECISION,
            c.ReferralDecision(
                event_id=new_event_id(),
                referral_id=ref.referral_id,
                sector=ref.sector,
                accepted=accepted,
                decided_at=await self.bed.now(),
                decline_reason=reason,
            ),
        )

    async def milestone(self, ref: c.ReferralView, milestone: c.Milestone) -> c.UpdateResult:
        return await self.update(
            c.UPDATE_REFERRAL_MILESTONE,
            c.ReferralMilestone(
                event_id=new_event_id(),
                referral_id=ref.referral_id,
                sector=ref.sector,
                milestone=milestone,
                at=await self.bed.now(),
            ),
        )

    async def care(self, ref: c.ReferralView, event: c.CareEvent, **fields: Any) -> c.UpdateResult:
        """The care unit records care on the medical referral (now, unless `at`)."""
        now = await self.bed.now()
        return await self.update(
            c.UPDATE_CLINICAL_CARE,
            c.ClinicalCareRecorded(
                event_id=new_event_id(),
                referral_id=ref.referral_id,
                sector=c.Sector.HEALTH,
                event=event,
                at=fields.pop("at", now),
                recorded_at=now,
                **fields,
            ),
        )

    async def breach(self, ref: c.ReferralView, *, risk: c.Risk | None = None) -> c.UpdateResult:
        """Legal aid records a breach of the protection order on its referral."""
        now = await self.bed.now()
        return await self.update(
            c.UPDATE_BREACH,
            c.ProtectionOrderBreach(
                event_id=new_event_id(),
                referral_id=ref.referral_id,
                sector=c.Sector.LEGAL,
                at=now,
                recorded_at=now,
                risk=risk,
            ),
        )

    async def terminate(self) -> None:
        with contextlib.suppress(Exception):
            await self.handle.terminate("test over")


def new_event_id() -> str:
    return f"evt-{secrets.token_hex(6)}"


def events(status: c.JourneyStatus, name: str) -> list[c.TimelineEvent]:
    return [event for event in status.timeline if event.event == name]


def seconds_policy() -> SlaPolicy:
    """A seconds-scale policy for tests that do not need the shipped one."""
    text = """
[ladder]
reminder = 0.5
escalate = 1.0
expire = 2.0
"""
    for wait, value in (
        ("shelter_accept", "100s"),
        ("shelter_checkin", "200s"),
        ("legal_accept", "300s"),
        ("employment_accept", "400s"),
        ("follow_up", "7d"),
    ):
        text += f'[deadlines.{wait}]\ncritical = "{value}"\nhigh = "{value}"\n'
        text += f'medium = "{value}"\nlow = "{value}"\n'
    return parse_policy(text)


@contextlib.asynccontextmanager
async def journey_testbed(
    test_server_path: str,
    *,
    policies: dict[str, SlaPolicy] | None = None,
) -> AsyncIterator[JourneyTestbed]:
    """A time-skipping server, its search attributes, a journey worker per
    policy (task queue -> policy; the shipped policy on JOURNEY_QUEUE) and the
    fake collaborators."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_path, **client_options(keyring=TEST_KEYRING)
    )
    try:
        await register_search_attributes(env.client)
        fakes = FakeCollaborators()
        queues = {JOURNEY_QUEUE: load_policy(), **(policies or {})}
        workers: list[Worker] = [
            build_worker(env.client, policy, task_queue=queue) for queue, policy in queues.items()
        ]
        for queue, activities in fakes.activities().items():
            workers.append(Worker(env.client, task_queue=queue, activities=activities))
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            yield JourneyTestbed(env=env, fakes=fakes)
    finally:
        await env.shutdown()


def near(actual: Any, expected: Any) -> bool:
    """Equal within a few seconds (real time passes between workflow tasks)."""
    if actual is None:
        return False
    delta = actual - expected
    assert isinstance(delta, timedelta)
    return abs(delta) <= timedelta(seconds=5)
