"""masar.v1.IdentityService, served by the network service beside
NetworkService: tokens beyond sign-in and their revocation (protos/masar/v1/
identity.proto). Protobuf <-> the token desk, validation, nothing else."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from masar.platform.access import requires
from masar.platform.clients import ClientRegistry
from masar.platform.errors import InvalidArgument
from masar.platform.identity import (
    ANY_AUTHENTICATED,
    NO_TOKEN,
    SERVICE_ROLES,
    Role,
    current_caller,
)
from masar.platform.revocation import Revocation
from masar.platform.validation import require_text
from masar.v1 import identity_pb2, identity_pb2_grpc
from services.network.tokens import Issued, RevocationSource, Spec, TokenDesk

if TYPE_CHECKING:
    from masar.platform.db import Database

SERVICE_NAME = "masar.v1.IdentityService"
MAX_TTL_SECONDS = 12 * 3600
_TOKEN_ID = re.compile(r"[A-Za-z0-9]{1,64}")


def _spec(message: identity_pb2.TokenSpec) -> Spec:
    if not 0 <= message.ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidArgument("spec.ttl_seconds", "must be between 0 and 12 hours")
    return Spec(
        role=message.role.strip(),
        org=message.organisation_id.strip(),
        region=message.region.strip(),
        subject=message.subject.strip(),
        ttl=timedelta(seconds=message.ttl_seconds) if message.ttl_seconds else None,
    )


def _stamp(value: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp


def _issued(issued: Issued) -> identity_pb2.IssueTokenResponse:
    caller = issued.caller
    return identity_pb2.IssueTokenResponse(
        token=issued.token,
        token_id=caller.token_id,
        issued_at=_stamp(caller.issued_at),
        expires_at=_stamp(caller.expires_at),
        audiences=sorted(caller.audiences),
    )


def _revocation(item: Revocation) -> identity_pb2.Revocation:
    message = identity_pb2.Revocation(
        token_id=item.token_id,
        subject=item.subject,
        organisation_id=item.organisation_id,
        expires_at=_stamp(item.expires_at),
    )
    if item.issued_before is not None:
        message.issued_before.CopyFrom(_stamp(item.issued_before))
    return message


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(
        self,
        *,
        database: Database,
        desk: TokenDesk,
        clients: ClientRegistry,
        revocations: RevocationSource | None = None,
    ) -> None:
        self.database = database
        self.desk = desk
        self.clients = clients
        self.revocations = revocations or RevocationSource()

    @requires(Role.NETWORK_ADMIN)
    async def IssueToken(
        self, request: identity_pb2.IssueTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IssueTokenResponse:
        spec = _spec(request.spec)
        require_text(spec.role, "spec.role", max_length=32)
        return _issued(await self.desk.issue_for_admin(current_caller(), spec))

    @requires(NO_TOKEN)
    async def IssueClientToken(
        self, request: identity_pb2.IssueClientTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.IssueTokenResponse:
        # The assertion first: an unknown client learns nothing of the rest.
        client = self.clients.verify(request.client_assertion)
        return _issued(await self.desk.issue_for_client(client.name, _spec(request.spec)))

    @requires(*SERVICE_ROLES)
    async def ListRevocations(
        self, request: identity_pb2.ListRevocationsRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ListRevocationsResponse:
        if request.since < 0:
            raise InvalidArgument("since", "is a cursor from a previous answer, or 0")
        found, cursor = await self.database.run(
            lambda s: self.revocations.list(s, int(request.since))
        )
        return identity_pb2.ListRevocationsResponse(
            revocations=[_revocation(r) for r in found], cursor=cursor
        )

    @requires(ANY_AUTHENTICATED)
    async def SignOut(
        self, request: identity_pb2.SignOutRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.SignOutResponse:
        if len(request.refresh_token) > 200:
            raise InvalidArgument("refresh_token", "is not a refresh token")
        await self.desk.sign_out(current_caller(), request.refresh_token)
        return identity_pb2.SignOutResponse()

    @requires(Role.NETWORK_ADMIN)
    async def RevokeToken(
        self, request: identity_pb2.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.RevokeTokenResponse:
        token_id = request.token_id.strip()
        if not _TOKEN_ID.fullmatch(token_id):
            raise InvalidArgument("token_id", "is a token's id (its jti)")
        await self.desk.revoke(current_caller(), token_id)
        return identity_pb2.RevokeTokenResponse()
