"""The transfer RPCs of intake's gRPC edge (a part of `IntakeServicer`).

Who may call what: the holding organisation's intake officers and
supervisors ask (RequestTransfer); the organisation a request is addressed
to answers (DecideTransfer); a coordinator of the case's region redirects
(RedirectTransfer); both organisations and the region's coordinators read
(GetTransfer, ListTransfers); intake's service identity records the rungs of
a transfer's ladder (RecordTransferRung). The scopes themselves are checked
by services.intake.transfers.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from masar.platform.access import requires
from masar.platform.errors import InvalidArgument
from masar.platform.identity import Role
from masar.platform.outbox import DeliveryOutcome
from masar.v1 import common_pb2, intake_pb2
from services.intake import domain as d
from services.intake.convert import (
    DELIVERY,
    TRANSFER_DECLINE,
    TRANSFER_DECLINE_IN,
    TRANSFER_REASON,
    TRANSFER_REASON_IN,
    TRANSFER_STATUS,
    TRANSFER_STATUS_IN,
    enum_in,
    escalation_pb,
    num,
    optional_enum_in,
    summary_pb,
    time_in,
    ts,
)
from services.intake.service import page_of
from services.intake.transfer_domain import TransferRecord
from services.intake.transfers import TransferService

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
HOLDERS = (Role.INTAKE_OFFICER, Role.SUPERVISOR)


def transfer_pb(t: TransferRecord) -> intake_pb2.Transfer:
    return intake_pb2.Transfer(
        transfer_id=t.transfer_id,
        case_id=t.case_id,
        region=t.region,
        from_organisation_id=t.from_organisation_id,
        to_organisation_id=t.to_organisation_id,
        reason=TRANSFER_REASON[t.reason],
        status=TRANSFER_STATUS[t.status],
        requested_at=ts(t.requested_at),
        consent_recorded_at=ts(t.consent_recorded_at),
        decided_at=ts(t.decided_at),
        decline_reason=num(TRANSFER_DECLINE, t.decline_reason),
        redirect_count=t.redirect_count,
        updated_at=ts(t.updated_at),
    )


def _delivery(change: d.ChangeView) -> Any:
    outcome: DeliveryOutcome | None = change.delivery
    return DELIVERY.get(outcome, common_pb2.DELIVERY_STATE_UNSPECIFIED)


class TransferRpcs:
    def __init__(self, transfers: TransferService) -> None:
        self._transfers = transfers

    @requires(*HOLDERS)
    async def RequestTransfer(
        self, request: intake_pb2.RequestTransferRequest, context: Context
    ) -> intake_pb2.RequestTransferResponse:
        result = await self._transfers.request(
            request.case_id,
            to_organisation_id=request.to_organisation_id,
            reason=enum_in(request.reason, TRANSFER_REASON_IN, "reason"),
            survivor_consents=request.survivor_consents,
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.RequestTransferResponse(
            transfer=transfer_pb(result.transfer),
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result.change),
        )

    @requires(*HOLDERS)
    async def DecideTransfer(
        self, request: intake_pb2.DecideTransferRequest, context: Context
    ) -> intake_pb2.DecideTransferResponse:
        reason = optional_enum_in(request.decline_reason, TRANSFER_DECLINE_IN, "decline_reason")
        if request.accept and reason is not None:
            raise InvalidArgument("decline_reason", "is only given when declining")
        result = await self._transfers.decide(
            request.transfer_id,
            accept=request.accept,
            decline_reason=reason,
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.DecideTransferResponse(
            transfer=transfer_pb(result.transfer),
            case=summary_pb(result.summary),
            change_id=result.change.change_id,
            delivery=_delivery(result.change),
        )

    @requires(Role.COORDINATOR)
    async def RedirectTransfer(
        self, request: intake_pb2.RedirectTransferRequest, context: Context
    ) -> intake_pb2.RedirectTransferResponse:
        result = await self._transfers.redirect(
            request.transfer_id,
            to_organisation_id=request.to_organisation_id,
            survivor_consents=request.survivor_consents,
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.RedirectTransferResponse(
            transfer=transfer_pb(result.transfer),
            change_id=result.change.change_id,
            delivery=_delivery(result.change),
        )

    @requires(*HOLDERS, Role.COORDINATOR)
    async def GetTransfer(
        self, request: intake_pb2.GetTransferRequest, context: Context
    ) -> intake_pb2.GetTransferResponse:
        return intake_pb2.GetTransferResponse(
            transfer=transfer_pb(await self._transfers.get(request.transfer_id))
        )

    @requires(*HOLDERS, Role.COORDINATOR)
    async def ListTransfers(
        self, request: intake_pb2.ListTransfersRequest, context: Context
    ) -> intake_pb2.ListTransfersResponse:
        items, token = await self._transfers.list(
            case_id=request.case_id or None,
            status=optional_enum_in(request.status, TRANSFER_STATUS_IN, "status"),
            page=page_of(request.page_size, request.page_token),
        )
        return intake_pb2.ListTransfersResponse(
            transfers=[transfer_pb(t) for t in items], next_page_token=token or ""
        )

    @requires(Role.SERVICE_INTAKE)
    async def RecordTransferRung(
        self, request: intake_pb2.RecordTransferRungRequest, context: Context
    ) -> intake_pb2.RecordTransferRungResponse:
        escalation, transfer, duplicate = await self._transfers.record_rung(
            case_id=request.case_id,
            region=request.region,
            transfer_id=request.transfer_id,
            to_organisation_id=request.to_organisation_id,
            level=request.level,
            due_at=time_in(request, "due_at", "due_at"),
            lapsed=request.lapsed,
            idempotency_key=request.idempotency_key,
        )
        return intake_pb2.RecordTransferRungResponse(
            escalation=escalation_pb(escalation),
            transfer=transfer_pb(transfer),
            duplicate=duplicate,
        )
