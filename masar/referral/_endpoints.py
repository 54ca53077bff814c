"""`ReferralEndpoints`: the six RPCs of common.proto that every sector serves
(DecideReferral, GetReferral, ListReferrals, RemindProvider, CloseReferral,
PurgeCase), implemented once.

Each sector's servicer still writes every RPC out, typed with its request and
response messages and with its roles (`@requires`), and delegates in one line::

    @requires(STAFF)
    async def DecideReferral(
        self, request: common_pb2.DecideReferralRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.DecideReferralResponse:
        return await self.shared.decide(request)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from masar.platform.errors import InvalidArgument
from masar.platform.validation import require_case_id, require_idempotency_key
from masar.referral._handshake import SectorHandshake
from masar.referral.messages import (
    closing_status_from_pb,
    decided_to_pb,
    decision_from_pb,
    filter_from_pb,
    from_timestamp_pb,
    page_to_pb,
    purged_to_pb,
    referral_to_pb,
)
from masar.v1 import common_pb2


def _withdrawn_at(request: common_pb2.PurgeCaseRequest) -> datetime | None:
    if not request.HasField("withdrawn_at"):
        return None
    try:
        return from_timestamp_pb(request.withdrawn_at)
    except (ValueError, OverflowError):
        raise InvalidArgument("withdrawn_at", "is not a valid time") from None


class ReferralEndpoints:
    """protobuf <-> the kit's `SectorHandshake` for the shared RPCs. An RPC on
    one referral asked by staff or a coordinator is authorised
    (`SectorHandshake.authorise`) before the rest of its request is read; the
    journey's own requests (remind, close, purge) come from the sector's
    service identity and check the referral id's shape only."""

    def __init__(self, referrals: SectorHandshake[Any, Any]) -> None:
        self.referrals = referrals

    async def decide(
        self, request: common_pb2.DecideReferralRequest
    ) -> common_pb2.DecideReferralResponse:
        referral = await self.referrals.authorise(request.referral_id)
        result = await self.referrals.decide(referral.referral_id, decision_from_pb(request))
        return decided_to_pb(result)

    async def get(self, request: common_pb2.GetReferralRequest) -> common_pb2.GetReferralResponse:
        referral = await self.referrals.authorise(request.referral_id)
        return common_pb2.GetReferralResponse(referral=referral_to_pb(referral))

    async def list(
        self, request: common_pb2.ListReferralsRequest
    ) -> common_pb2.ListReferralsResponse:
        return page_to_pb(await self.referrals.list_visible(filter_from_pb(request)))

    async def remind(
        self, request: common_pb2.RemindProviderRequest
    ) -> common_pb2.RemindProviderResponse:
        referral = await self.referrals.remind(
            self.referrals.check_referral_id(request.referral_id),
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return common_pb2.RemindProviderResponse(referral=referral_to_pb(referral))

    async def close(
        self, request: common_pb2.CloseReferralRequest
    ) -> common_pb2.CloseReferralResponse:
        referral = await self.referrals.close(
            self.referrals.check_referral_id(request.referral_id),
            status=closing_status_from_pb(request.status),
            idempotency_key=require_idempotency_key(request.idempotency_key),
        )
        return common_pb2.CloseReferralResponse(referral=referral_to_pb(referral))

    async def purge(self, request: common_pb2.PurgeCaseRequest) -> common_pb2.PurgeCaseResponse:
        result = await self.referrals.purge_case(
            require_case_id(request.case_id),
            idempotency_key=require_idempotency_key(request.idempotency_key),
            withdrawn_at=_withdrawn_at(request),
        )
        return purged_to_pb(result)
