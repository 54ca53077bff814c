"""Issue 12, item 6: a signed-out session, a disabled account and a revoked
token stop working everywhere within a minute. The network service keeps the
revocations; another service (shelter) polls ListRevocations as its service
identity — here every half second — and refuses what it learns."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from masar.platform.channels import StaticToken, authorised_channel
from masar.platform.identity import Role
from masar.platform.process import SectorProcess, start_sector
from masar.platform.revocation import NetworkRevocationFeed
from masar.platform.settings import ServiceSettings
from masar.v1 import identity_pb2, identity_pb2_grpc, shelter_pb2, shelter_pb2_grpc
from masar.v1 import network_pb2 as pb
from services.network.app import MIGRATIONS_DIR as NETWORK_MIGRATIONS
from services.network.app import build_components as network_components
from services.shelter.app import MIGRATIONS_DIR as SHELTER_MIGRATIONS
from services.shelter.app import build_components as shelter_components
from tests.services.harness import sector_settings
from tests.services.network.conftest import CHEAP_PASSWORDS, NO_THROTTLE
from tests.services.network.helpers import activate, create_account, create_org
from tests.support_auth import token_for

POLL = 0.5
WITHIN = 60.0  # the promise; the poll makes it about a second here
FES = "fes-meknes"


@dataclasses.dataclass
class Bed:
    network: SectorProcess
    shelter: SectorProcess
    channels: list[grpc.aio.Channel]

    def channel(self, process: SectorProcess, token: str) -> grpc.aio.Channel:
        channel = authorised_channel(f"127.0.0.1:{process.port}", StaticToken(token))
        self.channels.append(channel)
        return channel

    def coordinator(self) -> Any:
        """Fès-Meknès's coordinator: she manages its organisations' accounts."""
        from masar.v1 import network_pb2_grpc

        token = token_for(Role.COORDINATOR, region=FES, subject="coord-fes")
        return network_pb2_grpc.NetworkServiceStub(self.channel(self.network, token))

    def anonymous(self) -> Any:
        from masar.v1 import network_pb2_grpc

        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.network.port}")
        self.channels.append(channel)
        return network_pb2_grpc.NetworkServiceStub(channel)

    def identity(self, token: str) -> identity_pb2_grpc.IdentityServiceStub:
        return identity_pb2_grpc.IdentityServiceStub(self.channel(self.network, token))

    async def shelter_answers(self, token: str) -> grpc.StatusCode:
        stub = shelter_pb2_grpc.ShelterServiceStub(self.channel(self.shelter, token))
        try:
            await stub.ListShelters(shelter_pb2.ListSheltersRequest(region=FES), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


def _settings(settings: ServiceSettings) -> ServiceSettings:
    return dataclasses.replace(settings, revocation_poll_seconds=POLL)


@pytest.fixture
async def bed(tmp_path: Path, database_url: str) -> AsyncIterator[Bed]:
    """The network service (real clock) and shelter, polling the network."""

    def network_factory(settings: Any, database: Any, connector: Any) -> Any:
        return network_components(
            settings, database, connector, policy=NO_THROTTLE, passwords=CHEAP_PASSWORDS
        )

    network = await start_sector(
        _settings(sector_settings("network", tmp_path / "network", database_url)),
        network_factory,
        NETWORK_MIGRATIONS,
        run_worker=False,
    )
    feed = NetworkRevocationFeed(
        f"127.0.0.1:{network.port}", StaticToken(token_for(Role.SERVICE_SHELTER))
    )
    shelter = await start_sector(
        sector_settings("shelter", tmp_path / "shelter", f"sqlite:///{tmp_path / 'shelter.db'}"),
        shelter_components,
        SHELTER_MIGRATIONS,
        run_worker=False,
        revocations=feed,
        revocation_interval=POLL,
    )
    running = Bed(network, shelter, [])
    try:
        yield running
    finally:
        for channel in running.channels:
            await channel.close()
        await shelter.stop()
        await network.stop()


async def _refused_within(bed: Bed, token: str) -> float:
    """Seconds until shelter refuses `token` (fails after WITHIN)."""
    started = time.monotonic()
    while time.monotonic() - started < WITHIN:
        code = await bed.shelter_answers(token)
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return time.monotonic() - started
        assert code == grpc.StatusCode.OK
        await asyncio.sleep(0.1)
    pytest.fail(f"the token still works after {WITHIN} s")


async def test_a_signed_out_session_stops_working_everywhere(bed: Bed) -> None:
    admin = bed.coordinator()
    org = await create_org(admin)
    officer = await create_account(admin, org)
    other = await create_account(admin, org)
    signed_in = await activate(bed.anonymous(), officer)
    others = await activate(bed.anonymous(), other)
    token = signed_in.access_token
    # One token serves every service her role needs.
    assert await bed.shelter_answers(token) == grpc.StatusCode.OK

    await bed.identity(token).SignOut(
        identity_pb2.SignOutRequest(refresh_token=signed_in.refresh_token)
    )
    assert await _refused_within(bed, token) < 10
    # Her refresh token is dead too; her colleague's session is untouched.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bed.anonymous().RefreshToken(
            pb.RefreshTokenRequest(refresh_token=signed_in.refresh_token)
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await bed.shelter_answers(others.access_token) == grpc.StatusCode.OK


async def test_a_disabled_account_stops_working_within_a_minute(bed: Bed) -> None:
    admin = bed.coordinator()
    org = await create_org(admin)
    officer = await create_account(admin, org)
    colleague = await create_account(admin, org)
    token = (await activate(bed.anonymous(), officer)).access_token
    kept = (await activate(bed.anonymous(), colleague)).access_token
    # And a token the administrator issued for her (the same subject).
    issued = await bed.identity(token_for(Role.NETWORK_ADMIN)).IssueToken(
        identity_pb2.IssueTokenRequest(
            spec=identity_pb2.TokenSpec(
                role="intake_officer",
                organisation_id=org.organisation_id,
                subject=officer.account_id,
                ttl_seconds=3600,
            )
        )
    )
    for each in (token, issued.token):
        assert await bed.shelter_answers(each) == grpc.StatusCode.OK

    await admin.DisableAccount(
        pb.DisableAccountRequest(
            account_id=officer.account_id, reason=pb.DISABLE_REASON_LEFT_ORGANISATION
        )
    )
    assert await _refused_within(bed, token) < 10
    assert await bed.shelter_answers(issued.token) == grpc.StatusCode.UNAUTHENTICATED
    assert await bed.shelter_answers(kept) == grpc.StatusCode.OK
    # The network service itself refuses her too (its own poll of its database).
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await bed.identity(token).SignOut(identity_pb2.SignOutRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_administrator_revokes_one_token(bed: Bed) -> None:
    staff = token_for(Role.SHELTER_STAFF, org="org-a", subject="staff-1")
    twin = token_for(Role.SHELTER_STAFF, org="org-a", subject="staff-1")
    assert await bed.shelter_answers(staff) == grpc.StatusCode.OK
    token_id = _jti(staff)
    with pytest.raises(grpc.aio.AioRpcError) as err:  # not hers to revoke
        await bed.identity(twin).RevokeToken(identity_pb2.RevokeTokenRequest(token_id=token_id))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await bed.identity(token_for(Role.NETWORK_ADMIN)).RevokeToken(
        identity_pb2.RevokeTokenRequest(token_id=token_id)
    )
    assert await _refused_within(bed, staff) < 10
    assert await bed.shelter_answers(twin) == grpc.StatusCode.OK  # another token id


async def test_only_service_identities_list_revocations(bed: Bed) -> None:
    for token in (token_for(Role.COORDINATOR, region=FES), token_for(Role.NETWORK_ADMIN)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await bed.identity(token).ListRevocations(identity_pb2.ListRevocationsRequest())
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = await bed.identity(token_for(Role.SERVICE_LEGAL)).ListRevocations(
        identity_pb2.ListRevocationsRequest()
    )
    assert listed.cursor >= 0


def _jti(token: str) -> str:
    import base64
    import json

    body = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["jti"])
