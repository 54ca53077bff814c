"""Organisations and accounts through a real gRPC server and a real database:
who manages what, bad input refused before anything is written, no deletion."""

from __future__ import annotations

import secrets
from typing import Any

import grpc
import pytest

from masar.platform.identity import Role
from masar.v1 import network_pb2 as pb
from tests.services.harness import error_field
from tests.services.network.helpers import (
    FES,
    RABAT,
    admin,
    anonymous,
    audit_actions,
    create_account,
    create_org,
    stub_as,
)


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_organisations_are_created_and_suspended_by_the_regions_coordinator(network):
    fes = stub_as(network, Role.COORDINATOR, region=FES)
    org = await create_org(fes, kind=pb.ORGANISATION_KIND_HOSPITAL_CARE_UNIT)
    assert org.status == pb.ORGANISATION_STATUS_ACTIVE and org.region == FES
    assert list(org.languages) == [pb.SPOKEN_LANGUAGE_ARABIC, pb.SPOKEN_LANGUAGE_FRENCH]

    rabat = stub_as(network, Role.COORDINATOR, region=RABAT)
    error = await refused(create_org(rabat, region=FES))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    error = await refused(
        rabat.SuspendOrganisation(
            pb.SuspendOrganisationRequest(organisation_id=org.organisation_id)
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    # Officers read organisations, but do not create them.
    officer = stub_as(network, Role.INTAKE_OFFICER, org=org.organisation_id, region=FES)
    error = await refused(create_org(officer))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    listed = await officer.ListOrganisations(pb.ListOrganisationsRequest(region=FES))
    assert [o.organisation_id for o in listed.organisations] == [org.organisation_id]

    suspended = await fes.SuspendOrganisation(
        pb.SuspendOrganisationRequest(organisation_id=org.organisation_id)
    )
    assert suspended.organisation.status == pb.ORGANISATION_STATUS_SUSPENDED
    reinstated = await admin(network).ReinstateOrganisation(
        pb.ReinstateOrganisationRequest(organisation_id=org.organisation_id)
    )
    assert reinstated.organisation.status == pb.ORGANISATION_STATUS_ACTIVE
    actions = [a for a, t, _ in audit_actions(network) if t == org.organisation_id]
    assert actions == [
        "network.organisation_created",
        "network.organisation_suspended",
        "network.organisation_reinstated",
    ]


async def test_only_a_network_administrator_creates_coordinators(network):
    org = await create_org(admin(network))
    fes = stub_as(network, Role.COORDINATOR, region=FES)
    error = await refused(create_account(fes, org, pb.ACCOUNT_ROLE_COORDINATOR))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    coordinator = await create_account(admin(network), org, pb.ACCOUNT_ROLE_COORDINATOR)
    assert coordinator.account.region == FES and coordinator.totp_secret
    assert coordinator.account.totp_required and coordinator.account.password_change_required


async def test_a_supervisor_manages_her_own_organisations_accounts_only(network):
    fes = stub_as(network, Role.COORDINATOR, region=FES)
    ours, theirs = await create_org(fes, name="Amal"), await create_org(fes, name="Annajda")
    supervisor = stub_as(network, Role.SUPERVISOR, org=ours.organisation_id, region=FES)
    colleague = await create_account(supervisor, ours)
    stranger = await create_account(fes, theirs)

    error = await refused(create_account(supervisor, theirs))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    for call in (
        supervisor.DisableAccount(
            pb.DisableAccountRequest(account_id=stranger.account_id, reason=pb.DISABLE_REASON_OTHER)
        ),
        supervisor.EnableAccount(pb.EnableAccountRequest(account_id=stranger.account_id)),
        supervisor.GetAccount(pb.GetAccountRequest(account_id=stranger.account_id)),
        supervisor.ListAccounts(pb.ListAccountsRequest(organisation_id=theirs.organisation_id)),
        supervisor.ResetPassword(pb.ResetPasswordRequest(account_id=colleague.account_id)),
    ):
        error = await refused(call)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED

    listed = await supervisor.ListAccounts(pb.ListAccountsRequest())
    assert [a.account_id for a in listed.accounts] == [colleague.account_id]
    disabled = await supervisor.DisableAccount(
        pb.DisableAccountRequest(
            account_id=colleague.account_id, reason=pb.DISABLE_REASON_LEFT_ORGANISATION
        )
    )
    assert disabled.account.status == pb.ACCOUNT_STATUS_DISABLED
    # Disabled, never deleted.
    still = await supervisor.GetAccount(pb.GetAccountRequest(account_id=colleague.account_id))
    assert still.account.status == pb.ACCOUNT_STATUS_DISABLED
    assert network.count("accounts") == 2


async def test_roles_fit_their_organisation(network):
    fes = stub_as(network, Role.COORDINATOR, region=FES)
    association = await create_org(fes)
    error = await refused(create_account(fes, association, pb.ACCOUNT_ROLE_CARE_UNIT_OFFICER))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and error_field(error) == "role"
    error = await refused(create_account(fes, association, pb.ACCOUNT_ROLE_SHELTER_STAFF))
    assert error_field(error) == "role"
    police = await create_org(
        fes, kind=pb.ORGANISATION_KIND_POLICE_CARE_UNIT, sectors=[pb.SERVED_SECTOR_CASE_MANAGEMENT]
    )
    officer = await create_account(fes, police, pb.ACCOUNT_ROLE_CARE_UNIT_OFFICER)
    assert officer.account.role == pb.ACCOUNT_ROLE_CARE_UNIT_OFFICER


async def test_a_login_is_taken_once_and_a_retry_creates_nothing(network):
    fes = stub_as(network, Role.COORDINATOR, region=FES)
    org = await create_org(fes)
    request = pb.CreateAccountRequest(
        username="amina.o",
        display_name="Amina O.",
        role=pb.ACCOUNT_ROLE_INTAKE_OFFICER,
        organisation_id=org.organisation_id,
        email="amina@example.org",
        language=pb.PREFERRED_LANGUAGE_AR,
        idempotency_key="k-1",
    )
    first = await fes.CreateAccount(request)
    again = await fes.CreateAccount(request)
    assert again.account.account_id == first.account.account_id
    assert first.one_time_password and not again.one_time_password
    request.idempotency_key = "k-2"
    error = await refused(fes.CreateAccount(request))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    request.username, request.email = "amina.other", "AMINA@example.org"
    error = await refused(fes.CreateAccount(request))
    assert error.code() is grpc.StatusCode.ALREADY_EXISTS
    assert network.count("accounts") == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "a b"}, "username"),
        ({"username": ""}, "username"),
        ({"display_name": ""}, "display_name"),
        ({"role": pb.ACCOUNT_ROLE_UNSPECIFIED}, "role"),
        ({"role": 99}, "role"),
        ({"organisation_id": "shl-1"}, "organisation_id"),
        ({"email": "not-an-address"}, "email"),
        ({"mobile": "0612"}, "mobile"),
        ({"language": pb.PREFERRED_LANGUAGE_UNSPECIFIED}, "language"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_bad_account_input_names_the_field_and_writes_nothing(network, change, field):
    fes = stub_as(network, Role.COORDINATOR, region=FES)
    org = await create_org(fes)
    before = network.count("audit_log")
    request = pb.CreateAccountRequest(
        username="sara.k",
        display_name="Sara K.",
        role=pb.ACCOUNT_ROLE_INTAKE_OFFICER,
        organisation_id=org.organisation_id,
        email="sara@example.org",
        language=pb.PREFERRED_LANGUAGE_EN,
        idempotency_key=secrets.token_hex(4),
    )
    for name, value in change.items():
        setattr(request, name, value)
    error = await refused(fes.CreateAccount(request))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(error) == field
    assert network.count("accounts") == 0 and network.count("audit_log") == before


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SignInRequest(password="x" * 12), "login"),
        (pb.SignInRequest(login="someone"), "password"),
        (pb.SignInRequest(login="someone", password="x" * 12, totp_code="12ab56"), "totp_code"),
        (pb.SignInRequest(login="someone", password="x" * 300), "password"),
    ],
)
async def test_bad_sign_in_input_names_the_field_and_writes_nothing(network, request_, field):
    error = await refused(anonymous(network).SignIn(request_))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and error_field(error) == field
    assert network.count("audit_log") == 0 and network.count("sign_in_failures") == 0


async def test_bad_organisation_input_names_the_field(network):
    stub = admin(network)
    base: dict[str, Any] = dict(
        name="Amal",
        kind=pb.ORGANISATION_KIND_ASSOCIATION,
        region=FES,
        languages=[pb.SPOKEN_LANGUAGE_ARABIC],
        sectors=[pb.SERVED_SECTOR_CASE_MANAGEMENT],
        idempotency_key="k",
    )
    for change, field in (
        ({"name": ""}, "name"),
        ({"kind": pb.ORGANISATION_KIND_UNSPECIFIED}, "kind"),
        ({"region": "atlantis"}, "region"),
        ({"languages": []}, "languages"),
        ({"sectors": [pb.SERVED_SECTOR_UNSPECIFIED]}, "sectors"),
    ):
        error = await refused(
            stub.CreateOrganisation(pb.CreateOrganisationRequest(**{**base, **change}))
        )
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT and error_field(error) == field
    assert network.count("organisations") == 0


async def test_administration_needs_a_token_and_a_managing_role(network):
    anon = anonymous(network)
    error = await refused(anon.ListAccounts(pb.ListAccountsRequest()))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    officer = stub_as(network, Role.INTAKE_OFFICER, org="org-000000000000", region=FES)
    error = await refused(officer.ListAccounts(pb.ListAccountsRequest()))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_accounts_are_listed_page_by_page(network):
    fes = stub_as(network, Role.COORDINATOR, region=FES)
    org = await create_org(fes)
    made = {(await create_account(fes, org)).account_id for _ in range(5)}
    seen: list[str] = []
    token = ""
    while True:
        page = await fes.ListAccounts(pb.ListAccountsRequest(page_size=2, page_token=token))
        seen += [a.account_id for a in page.accounts]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(made)
    rabat = stub_as(network, Role.COORDINATOR, region=RABAT)
    assert not (await rabat.ListAccounts(pb.ListAccountsRequest())).accounts
