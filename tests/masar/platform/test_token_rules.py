"""Issue 12, item 6: what a token must be to be accepted — for the service
that verifies it (`aud`), at most 12 hours long, with the scope its role
needs — checked by real services; a person's one token serves every service
her role needs, and service identities keep working."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from masar.contract import ServiceName
from masar.platform.access import _ROLES_ATTRIBUTE
from masar.platform.errors import PermissionDenied, Unauthenticated
from masar.platform.identity import (
    ANY_AUTHENTICATED,
    MAX_TTL,
    NO_TOKEN,
    ROLE_AUDIENCES,
    Role,
)
from masar.v1 import common_pb2, legal_pb2, shelter_pb2
from services.legal import app as legal_app
from services.shelter import app as shelter_app
from tests.services.harness import RunningSector, running_sector, sector_settings
from tests.support_auth import TEST_ISSUER, bearer, token_for

FES = "fes-meknes"


def _signed(**claims: Any) -> str:
    """A token signed with the test issuer's key, claims as given (what the
    issuer itself refuses to make)."""
    now = int(datetime.now(UTC).timestamp())
    body = {
        "iss": "masar",
        "sub": "someone",
        "org": "",
        "region": "",
        "aud": ["shelter", "legal", "network"],
        "iat": now,
        "exp": now + 600,
        "jti": "0123456789abcdef",
        **claims,
    }
    header = {"alg": "EdDSA", "typ": "JWT", "kid": TEST_ISSUER.key_id}
    return TEST_ISSUER._sign(header, {k: v for k, v in body.items() if v is not None})


@pytest.fixture
async def sectors(tmp_path: Path) -> AsyncIterator[dict[str, RunningSector]]:
    started: dict[str, RunningSector] = {}
    managers = []
    names: tuple[ServiceName, ServiceName] = ("shelter", "legal")
    for name, app in zip(names, (shelter_app, legal_app), strict=True):
        settings = sector_settings(name, tmp_path / name, f"sqlite:///{tmp_path / name}.db")
        manager = running_sector(settings, app.build_components, app.MIGRATIONS_DIR)
        managers.append(manager)
        started[name] = await manager.__aenter__()
    try:
        yield started
    finally:
        for manager in reversed(managers):
            await manager.__aexit__(None, None, None)


async def _code(sector: RunningSector, name: str, token: str) -> grpc.StatusCode:
    """A reading RPC of the sector, as `token`."""
    request: Any
    if name == "shelter":
        method, request = "ListShelters", shelter_pb2.ListSheltersRequest(region=FES)
        reply_type: Any = shelter_pb2.ListSheltersResponse
        path = "/masar.v1.ShelterService/ListShelters"
    else:
        method, request = "ListProviders", legal_pb2.ListLegalProvidersRequest(region=FES)
        reply_type = legal_pb2.ListLegalProvidersResponse
        path = "/masar.v1.LegalAidService/ListProviders"
    call = sector.channel.unary_unary(
        path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=reply_type.FromString,
    )
    try:
        await call(request, metadata=bearer(token), timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    assert method
    return grpc.StatusCode.OK


OK, DENIED, UNAUTH = (
    grpc.StatusCode.OK,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
)


async def test_a_token_for_shelter_is_refused_by_legal(sectors) -> None:
    # A coordinator may read both; her token for the shelter service alone
    # is refused by legal aid.
    shelter_only = TEST_ISSUER.issue(role=Role.COORDINATOR, region=FES, audiences=["shelter"])
    assert await _code(sectors["shelter"], "shelter", shelter_only) == OK
    assert await _code(sectors["legal"], "legal", shelter_only) == DENIED
    # Her session's token is for every service her role needs.
    everywhere = token_for(Role.COORDINATOR, region=FES)
    for name in ("shelter", "legal"):
        assert await _code(sectors[name], name, everywhere) == OK
    # Shelter staff's token is for the shelter service (and the network).
    staff = token_for(Role.SHELTER_STAFF, org="org-a")
    assert await _code(sectors["legal"], "legal", staff) == DENIED


async def test_a_token_living_longer_than_12_hours_is_refused(sectors) -> None:
    now = int(datetime.now(UTC).timestamp())
    too_long = _signed(role="coordinator", region=FES, iat=now, exp=now + 13 * 3600)
    just_right = _signed(role="coordinator", region=FES, iat=now, exp=now + 12 * 3600)
    assert await _code(sectors["shelter"], "shelter", too_long) == UNAUTH
    assert await _code(sectors["shelter"], "shelter", just_right) == OK
    with pytest.raises(ValueError, match="12 hours"):
        TEST_ISSUER.issue(role=Role.OPERATOR, ttl=MAX_TTL + timedelta(seconds=1))


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "coordinator"},  # no region
        {"role": "shelter_staff"},  # no organisation
        {"role": "intake_officer", "region": FES},
        {"role": "supervisor"},
        {"role": "care_unit_officer"},
        {"role": "coordinator", "region": FES, "aud": None},  # for no service
        {"role": "coordinator", "region": FES, "aud": []},
        {"role": "coordinator", "region": FES, "jti": None},  # no id: cannot be revoked
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
async def test_tokens_without_their_scope_audience_or_id_are_refused(sectors, claims) -> None:
    assert await _code(sectors["shelter"], "shelter", _signed(**claims)) == UNAUTH


def test_verification_names_what_is_wrong() -> None:
    verifier = TEST_ISSUER.verifier()
    with pytest.raises(Unauthenticated, match="must name an organisation"):
        verifier.verify(_signed(role="intake_officer"))
    with pytest.raises(Unauthenticated, match="must name a region"):
        verifier.verify(_signed(role="coordinator"))
    with pytest.raises(PermissionDenied, match="not for the intake service"):
        verifier.verify(_signed(role="coordinator", region=FES), audience="intake")
    caller = verifier.verify(token_for(Role.INTAKE_OFFICER, org="org-a"), audience="shelter")
    assert caller.audiences == {
        "intake",
        "shelter",
        "legal",
        "employment",
        "health",
        "psychosocial",
        "network",
    }
    assert caller.token_id


async def test_service_identities_keep_working(sectors) -> None:
    shelter = token_for(Role.SERVICE_SHELTER)
    get = sectors["shelter"].channel.unary_unary(
        "/masar.v1.ShelterService/GetReferral",
        request_serializer=common_pb2.GetReferralRequest.SerializeToString,
        response_deserializer=common_pb2.GetReferralResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get(
            common_pb2.GetReferralRequest(referral_id="shr-0123456789abcdef"),
            metadata=bearer(shelter),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # through, to the handler
    assert TEST_ISSUER.verifier().verify(shelter, audience="intake").role is Role.SERVICE_SHELTER


SERVICERS = {
    "intake": (
        "services.intake.servicer",
        "services.intake.journey_servicer",
        "services.intake.servicer_grants",
        "services.intake.servicer_transfers",
    ),
    "shelter": ("services.shelter.servicer",),
    "legal": ("services.legal.servicer",),
    "employment": ("services.employment.servicer",),
    "health": ("services.health.servicer",),
    "psychosocial": ("services.psychosocial.servicer",),
    "network": ("services.network.servicer", "services.network.identity_servicer"),
}


def test_each_role_audience_covers_every_service_it_may_call() -> None:
    """ROLE_AUDIENCES against the servicers' `requires` declarations: a role
    allowed a method of a service has that service among its audiences."""
    missing: list[str] = []
    for service, modules in SERVICERS.items():
        for name in modules:
            module = importlib.import_module(name)
            for cls in vars(module).values():
                if not isinstance(cls, type) or cls.__module__ != name:
                    continue
                for attr in dir(cls):
                    roles = getattr(getattr(cls, attr, None), _ROLES_ATTRIBUTE, None) or ()
                    for role in roles:
                        if role == NO_TOKEN:
                            continue
                        wanted = Role if role == ANY_AUTHENTICATED else [Role(role)]
                        for each in wanted:
                            if service not in ROLE_AUDIENCES[each]:
                                missing.append(f"{each.value} -> {service} ({attr})")
    assert set(ROLE_AUDIENCES) == set(Role)
    assert not missing, sorted(set(missing))
