"""The emergency-grant RPCs of intake's gRPC edge (a part of `IntakeServicer`).

Who may call what: a coordinator asks (OpenEmergencyGrant); coordinators and
supervisors approve, refuse, revoke and list — each within the scope
services.intake.grants checks per grant: a second coordinator of the case's
region or a supervisor of its holding organisation decides, never the
requester; the holder, the approver or such a supervisor revokes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import grpc

from masar.platform.access import requires
from masar.platform.errors import InvalidArgument
from masar.platform.identity import Role
from masar.v1 import intake_pb2
from services.intake import domain as d
from services.intake.convert import GRANT_REASON, GRANT_REASON_IN, enum_in, ts
from services.intake.grants import MAX_GRANT_TTL, EmergencyGrant, GrantStatus
from services.intake.service import CaseService

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
DECIDERS = (Role.COORDINATOR, Role.SUPERVISOR)
MAX_GRANT_SECONDS = int(MAX_GRANT_TTL.total_seconds())

GRANT_STATUS: Mapping[GrantStatus, Any] = {
    status: intake_pb2.EmergencyGrantStatus.Value(f"EMERGENCY_GRANT_STATUS_{status.name}")
    for status in GrantStatus
}
GRANT_STATUS_IN = {number: status for status, number in GRANT_STATUS.items()}


def grant_pb(g: EmergencyGrant, now: datetime) -> intake_pb2.EmergencyGrant:
    """The grant as it stands at `now` (intake's clock)."""
    return intake_pb2.EmergencyGrant(
        grant_id=g.grant_id,
        case_id=g.case_id,
        reason=GRANT_REASON[g.reason],
        granted_at=ts(g.granted_at),
        expires_at=ts(g.expires_at),
        revoked_at=ts(g.revoked_at),
        status=GRANT_STATUS[g.status(now)],
        requested_at=ts(g.requested_at),
        requested_by=g.subject,
        requester_region=g.region,
        case_region=g.case_region,
        ttl_seconds=int(g.ttl.total_seconds()),
        decided_by=g.decided_by or "",
        decided_at=ts(g.decided_at),
        revoked_by=g.revoked_by or "",
    )


class GrantRpcs:
    _cases: CaseService  # set by IntakeServicer

    @requires(Role.COORDINATOR)
    async def OpenEmergencyGrant(
        self, request: intake_pb2.OpenEmergencyGrantRequest, context: Context
    ) -> intake_pb2.OpenEmergencyGrantResponse:
        reason = enum_in(request.reason, GRANT_REASON_IN, "reason")
        if not 0 <= request.ttl_seconds <= MAX_GRANT_SECONDS:
            raise InvalidArgument("ttl_seconds", f"must be between 0 and {MAX_GRANT_SECONDS}")
        d.require_intake_case_id(request.case_id)
        grant = await self._cases.grants.open(
            request.case_id,
            reason=reason,
            note=request.note or None,
            ttl=timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else None,
        )
        return intake_pb2.OpenEmergencyGrantResponse(
            grant=grant_pb(grant, self._cases.grants.now())
        )

    @requires(*DECIDERS)
    async def ApproveEmergencyGrant(
        self, request: intake_pb2.ApproveEmergencyGrantRequest, context: Context
    ) -> intake_pb2.ApproveEmergencyGrantResponse:
        grant = await self._cases.grants.approve(request.grant_id)
        return intake_pb2.ApproveEmergencyGrantResponse(
            grant=grant_pb(grant, self._cases.grants.now())
        )

    @requires(*DECIDERS)
    async def RefuseEmergencyGrant(
        self, request: intake_pb2.RefuseEmergencyGrantRequest, context: Context
    ) -> intake_pb2.RefuseEmergencyGrantResponse:
        grant = await self._cases.grants.refuse(request.grant_id)
        return intake_pb2.RefuseEmergencyGrantResponse(
            grant=grant_pb(grant, self._cases.grants.now())
        )

    @requires(*DECIDERS)
    async def RevokeEmergencyGrant(
        self, request: intake_pb2.RevokeEmergencyGrantRequest, context: Context
    ) -> intake_pb2.RevokeEmergencyGrantResponse:
        grant = await self._cases.grants.revoke(request.grant_id)
        return intake_pb2.RevokeEmergencyGrantResponse(
            grant=grant_pb(grant, self._cases.grants.now())
        )

    @requires(*DECIDERS)
    async def ListEmergencyGrants(
        self, request: intake_pb2.ListEmergencyGrantsRequest, context: Context
    ) -> intake_pb2.ListEmergencyGrantsResponse:
        if request.case_id:
            d.require_intake_case_id(request.case_id)
        status = None
        if request.status:
            status = enum_in(request.status, GRANT_STATUS_IN, "status")
        page = await self._cases.grants.list(
            case_id=request.case_id or None,
            status=status,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        now = self._cases.grants.now()
        return intake_pb2.ListEmergencyGrantsResponse(
            grants=[grant_pb(g, now) for g in page.grants], next_page_token=page.next_page_token
        )
