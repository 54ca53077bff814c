"""What every sector's Temporal activities share: calling the sector's own
gRPC API as its service identity (so every step crosses the service boundary
and is traced), getting intake's consent proof first, and turning gRPC
refusals into the contract's non-retryable ApplicationErrors.

Each sector's `activities.py` subclasses `SectorActivities` and declares the
four activities itself, under the contract's names, each delegating in one
line::

    @activity.defn(name=contract.SHELTER_REQUEST_REFERRAL)
    async def request_referral(self, request: ReferralRequest) -> ReferralCreated:
        return await self.forward_request(request)

and calls its own request RPC in `submit_request`, with the fields every
request RPC carries (`RequestFields`) and the needs it translates itself
(`NeedCodes` for needs given as the contract's codes).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypedDict, TypeVar

import grpc
import grpc.aio
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import (
    CasePurge,
    ProviderReminder,
    PurgeResult,
    ReferralClosure,
    ReferralCreated,
    ReferralRequest,
    ReferralStatus,
    Risk,
    Sector,
)
from masar.referral.messages import risk_to_pb, sector_to_pb, status_to_pb, timestamp_pb
from masar.v1 import common_pb2, intake_pb2

T = TypeVar("T")
V = TypeVar("V", bound=int)
V_co = TypeVar("V_co", bound=int, covariant=True)

# gRPC refusals that retrying cannot fix, as the contract's ApplicationError types.
_REFUSALS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: contract.ERR_INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: contract.ERR_INVALID,
    grpc.StatusCode.OUT_OF_RANGE: contract.ERR_INVALID,
    grpc.StatusCode.ALREADY_EXISTS: contract.ERR_INVALID,
    grpc.StatusCode.NOT_FOUND: contract.ERR_UNKNOWN_REFERRAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED: contract.ERR_NO_PROVIDER,
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
}


def activity_error(rpc: str, error: grpc.aio.AioRpcError) -> ApplicationError:
    """A sector RPC failure as an activity failure: business refusals are
    non-retryable with a contract type; anything else (UNAVAILABLE,
    DEADLINE_EXCEEDED, INTERNAL, ...) is retried by the caller's policy. The
    message carries the RPC, the code and the server's detail (which names
    a field or a state, never a value)."""
    code = error.code()
    refusal = _REFUSALS.get(code)
    name = code.name if code is not None else "UNKNOWN"
    if refusal is not None:
        return ApplicationError(
            f"{rpc}: {name}: {error.details() or ''}", type=refusal, non_retryable=True
        )
    return ApplicationError(f"{rpc}: {name}", type=name, non_retryable=False)


class RequestFields(TypedDict):
    """The fields every sector's request RPC (RequestPlacement, RequestLegalAid,
    RequestEnrolment) carries besides its needs, from the journey's request."""

    case_id: str
    region: str
    risk: common_pb2.RiskLevel.ValueType
    exclude_provider_ids: Sequence[str]
    provider_id: str
    idempotency_key: str
    consent_proof: str


def request_fields(request: ReferralRequest, consent_proof: str) -> RequestFields:
    return RequestFields(
        case_id=request.case_id,
        region=request.region,
        risk=risk_to_pb(Risk(request.risk)),
        exclude_provider_ids=request.exclude_provider_ids,
        provider_id=request.provider_id or "",
        idempotency_key=request.idempotency_key,
        consent_proof=consent_proof,
    )


class EnumValues(Protocol[V_co]):
    """A generated protobuf enum (e.g. `shelter_pb2.AccessibilityFeature`)."""

    def Value(self, name: str) -> V_co: ...


@dataclass(frozen=True)
class NeedCodes(Generic[V]):
    """One of the contract's coded needs (accessibility features, programme
    kinds, legal matters) and the sector's protobuf enum for it: a code
    ("wheelchair") is the enum value `prefix` + its upper case
    (ACCESSIBILITY_FEATURE_WHEELCHAIR). A code not in `known` is a
    non-retryable invalid request naming `what`, never the code."""

    enum_type: EnumValues[V]
    prefix: str
    known: Collection[str]
    what: str

    def to_pb(self, codes: Iterable[str]) -> list[V]:
        return [self.value(code) for code in codes]

    def value(self, code: str) -> V:
        if code not in self.known:
            raise ApplicationError(
                f"request_referral: unknown {self.what}",
                type=contract.ERR_INVALID,
                non_retryable=True,
            )
        return self.enum_type.Value(f"{self.prefix}{code.upper()}")


class ConsentSource(Protocol):
    """Where a sector's activity gets intake's proof of consent for a case."""

    async def proof(self, case_id: str, sector: Sector) -> str: ...


class IntakeConsent:
    """Asks intake (`IssueConsentProof`) over a channel that carries the
    sector's service identity. No consent is a non-retryable NoConsent."""

    def __init__(self, stub: Any, *, rpc_timeout: float = 10.0) -> None:
        self.stub = stub
        self.rpc_timeout = rpc_timeout

    async def proof(self, case_id: str, sector: Sector) -> str:
        try:
            reply = await self.stub.IssueConsentProof(
                intake_pb2.IssueConsentProofRequest(case_id=case_id, sector=sector_to_pb(sector)),
                timeout=self.rpc_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise ApplicationError(
                    "request_referral: no consent for this sector",
                    type=contract.ERR_NO_CONSENT,
                    non_retryable=True,
                ) from None
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise ApplicationError(
                    "request_referral: unknown case",
                    type=contract.ERR_UNKNOWN_CASE,
                    non_retryable=True,
                ) from None
            raise activity_error("issue_consent_proof", exc) from None
        return str(reply.proof)


class SectorActivities(abc.ABC):
    """The four contract activities of a sector, calling its own gRPC API.

    A subclass sets `sector`, implements `submit_request` (the sector's own
    request RPC, e.g. RequestPlacement, with the `RequestFields` it is given,
    consent proof included), and declares `request_referral`,
    `remind_provider`, `close_referral` and `purge_case` with
    `@activity.defn(name=contract.<SECTOR>_<VERB>)`, each calling the
    matching `forward_*` method. The stub must also have the
    common RemindProvider, CloseReferral and PurgeCase RPCs. `consent`
    obtains intake's proof of consent before each request (without one the
    sector refuses the request). Register `definitions()` with the worker.
    """

    sector: ClassVar[Sector]
    rpc_timeout: ClassVar[float] = 10.0

    def __init__(self, stub: Any, consent: ConsentSource | None = None) -> None:
        self.stub = stub
        self.consent = consent

    @abc.abstractmethod
    async def submit_request(
        self, request: ReferralRequest, fields: RequestFields
    ) -> common_pb2.Referral:
        """Call the sector's request RPC (timeout `rpc_timeout`) with `fields`
        and the request's needs; return the masar.v1.Referral it created."""

    @abc.abstractmethod
    async def request_referral(self, request: ReferralRequest) -> ReferralCreated: ...

    @abc.abstractmethod
    async def remind_provider(self, reminder: ProviderReminder) -> None: ...

    @abc.abstractmethod
    async def close_referral(self, closure: ReferralClosure) -> None: ...

    @abc.abstractmethod
    async def purge_case(self, purge: CasePurge) -> PurgeResult: ...

    def definitions(self) -> list[Callable[..., Awaitable[Any]]]:
        """The four activities, for the sector's worker."""
        return [self.request_referral, self.remind_provider, self.close_referral, self.purge_case]

    async def _call(self, rpc: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            raise activity_error(rpc, exc) from None

    async def forward_request(self, request: ReferralRequest) -> ReferralCreated:
        proof = ""
        if self.consent is not None:
            proof = await self.consent.proof(request.case_id, self.sector)
        referral = await self._call(
            "request_referral", self.submit_request(request, request_fields(request, proof))
        )
        return ReferralCreated(
            referral_id=referral.referral_id,
            provider_id=referral.provider_id,
            region=referral.region,
            organisation_id=referral.organisation_id,
        )

    async def forward_reminder(self, reminder: ProviderReminder) -> None:
        await self._call(
            "remind_provider",
            self.stub.RemindProvider(
                common_pb2.RemindProviderRequest(
                    referral_id=reminder.referral_id, idempotency_key=reminder.idempotency_key
                ),
                timeout=self.rpc_timeout,
            ),
        )

    async def forward_closure(self, closure: ReferralClosure) -> None:
        await self._call(
            "close_referral",
            self.stub.CloseReferral(
                common_pb2.CloseReferralRequest(
                    referral_id=closure.referral_id,
                    status=status_to_pb(ReferralStatus(closure.status)),
                    idempotency_key=closure.idempotency_key,
                ),
                timeout=self.rpc_timeout,
            ),
        )

    async def forward_purge(self, purge: CasePurge) -> PurgeResult:
        reply = await self._call(
            "purge_case",
            self.stub.PurgeCase(
                common_pb2.PurgeCaseRequest(
                    case_id=purge.case_id,
                    idempotency_key=purge.idempotency_key,
                    withdrawn_at=(timestamp_pb(purge.withdrawn_at) if purge.withdrawn_at else None),
                ),
                timeout=self.rpc_timeout,
            ),
        )
        return PurgeResult(
            referrals_withdrawn=reply.referrals_withdrawn, records_purged=reply.records_purged
        )
