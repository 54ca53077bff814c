"""Intake's Temporal activities (task queue `masar-intake`).

Each calls intake's own gRPC API, so every orchestration step crosses the
service boundary (and is traced and audited like any other call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio import activity
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import ERR_INVALID, ERR_UNKNOWN_CASE, EscalationNotice, TransferRungNotice
from masar.platform.rpc import FIELD_METADATA_KEY
from masar.v1 import intake_pb2

if TYPE_CHECKING:  # the async stub type exists in the generated stubs only
    from masar.v1.intake_pb2_grpc import IntakeServiceAsyncStub

RPC_TIMEOUT = 10.0


def _field_of(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == FIELD_METADATA_KEY:
            return str(value)
    return "request"


def _business_refusal(error: grpc.aio.AioRpcError) -> ApplicationError | None:
    """Refusals a retry cannot fix become non-retryable errors with a type;
    anything else (UNAVAILABLE, DEADLINE_EXCEEDED...) is retried."""
    code = error.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return ApplicationError("unknown case", type=ERR_UNKNOWN_CASE, non_retryable=True)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ApplicationError(
            f"invalid escalation notice: {_field_of(error)}", type=ERR_INVALID, non_retryable=True
        )
    return None


class IntakeActivities:
    """intake.record_escalation and intake.record_transfer_rung, through
    intake's own gRPC API (`stub`)."""

    def __init__(self, stub: IntakeServiceAsyncStub, *, rpc_timeout: float = RPC_TIMEOUT) -> None:
        self._stub = stub
        self._rpc_timeout = rpc_timeout

    @activity.defn(name=contract.INTAKE_RECORD_ESCALATION)
    async def record_escalation(self, notice: EscalationNotice) -> None:
        """Put a journey's reminder or escalation in the coordinators' inbox
        (idempotent by the notice's key)."""
        due_at = Timestamp()
        due_at.FromDatetime(notice.due_at)
        request = intake_pb2.RecordEscalationRequest(
            case_id=notice.case_id,
            region=notice.region,
            level=notice.level,
            wait=notice.wait,
            due_at=due_at,
            referral_id=notice.referral_id or "",
            idempotency_key=notice.idempotency_key,
        )
        try:
            await self._stub.RecordEscalation(request, timeout=self._rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            refusal = _business_refusal(exc)
            if refusal is not None:
                raise refusal from None
            raise

    @activity.defn(name=contract.INTAKE_RECORD_TRANSFER_RUNG)
    async def record_transfer_rung(self, notice: TransferRungNotice) -> None:
        """A rung of a transfer's ladder: a reminder to the receiving
        organisation, an escalation to the region's coordinators, or the
        lapse (idempotent by the notice's key)."""
        due_at = Timestamp()
        due_at.FromDatetime(notice.due_at)
        request = intake_pb2.RecordTransferRungRequest(
            case_id=notice.case_id,
            region=notice.region,
            transfer_id=notice.transfer_id,
            to_organisation_id=notice.to_organisation_id,
            level=notice.level,
            due_at=due_at,
            lapsed=notice.lapsed,
            idempotency_key=notice.idempotency_key,
        )
        try:
            await self._stub.RecordTransferRung(request, timeout=self._rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            refusal = _business_refusal(exc)
            if refusal is not None:
                raise refusal from None
            raise
