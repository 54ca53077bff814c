"""Signing in through a real gRPC server and a real database: the same error
(and time) for an unknown account and a wrong password, progressive slowing
of repeated failures, the TOTP second factor, refresh, password change and
reset — each audited."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import timedelta

import grpc
import pyotp
import pytest

from masar.platform import audit
from masar.platform.identity import Role, TokenVerifier
from masar.v1 import network_pb2 as pb
from services.network.domain import ThrottlePolicy
from services.network.signin import SIGN_IN_FAILED, SignInPolicy
from tests.services.network.conftest import CHEAP_PASSWORDS, network_service
from tests.services.network.helpers import (
    FES,
    NEW_PASSWORD,
    Person,
    activate,
    admin,
    anonymous,
    audit_actions,
    create_account,
    create_org,
    from_address,
    sign_in,
    stub_as,
)


async def coordinator_of(network, clock, region=FES) -> tuple[Person, pb.Organisation]:
    org = await create_org(admin(network), region=region)
    person = await create_account(admin(network), org, pb.ACCOUNT_ROLE_COORDINATOR)
    return person, org


async def officer_of(network, region=FES) -> tuple[Person, pb.Organisation]:
    coordinator = stub_as(network, Role.COORDINATOR, region=region)
    org = await create_org(coordinator, region=region)
    return await create_account(coordinator, org), org


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_unknown_account_and_wrong_password_look_the_same(tmp_path, database_url, clock):
    # The service's own argon2 cost: skipping the hash would show in the timing.
    async with network_service(
        tmp_path, database_url, policy=SignInPolicy(throttle=ThrottlePolicy(free=10_000))
    ) as network:
        anon = anonymous(network)
        person, _ = await officer_of(network)
        await activate(anon, person)
        wrong = pb.SignInRequest(login=person.username, password="not the password at all")
        unknown = pb.SignInRequest(login="nobody.here", password="not the password at all")
        await refused(anon.SignIn(wrong))  # warm both paths up
        await refused(anon.SignIn(unknown))
        times: dict[str, list[float]] = {"wrong": [], "unknown": []}
        for _ in range(10):
            for name, request in (("wrong", wrong), ("unknown", unknown)):
                started = time.perf_counter()
                error = await refused(anon.SignIn(request))
                times[name].append(time.perf_counter() - started)
                assert error.code() is grpc.StatusCode.UNAUTHENTICATED
                assert error.details() == SIGN_IN_FAILED
        wrong_median = statistics.median(times["wrong"])
        unknown_median = statistics.median(times["unknown"])
        # Verifying a hash is most of the time taken: an unknown account is
        # checked against a dummy hash, so neither path is measurably faster.
        assert abs(wrong_median - unknown_median) < max(0.03, 0.4 * wrong_median), times
        reasons = [r for a, _, r in audit_actions(network) if a == "network.sign_in_failed"]
        assert {"wrong_password", "unknown_account"} <= set(reasons)


async def test_repeated_failures_slow_down_yet_another_address_signs_in(tmp_path, database_url):
    policy = SignInPolicy(
        throttle=ThrottlePolicy(free=2, base=_s(0.25), cap=_s(2.0), account_cap=_s(0.5))
    )
    async with network_service(
        tmp_path, database_url, policy=policy, passwords=CHEAP_PASSWORDS
    ) as network:
        anon = anonymous(network)
        person, _ = await officer_of(network)
        await activate(anon, person, metadata=from_address("198.51.100.20"))
        attacker = from_address("203.0.113.7")
        durations = []
        for _ in range(5):
            started = time.perf_counter()
            error = await refused(
                sign_in(anon, person, password="guess-" + "x" * 12, metadata=attacker)
            )
            durations.append(time.perf_counter() - started)
            assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert durations[0] < 0.2 and durations[1] < 0.2, durations
        # Third failure on: 0.25 s, then 0.5 s, then 1 s (address), growing.
        assert durations[2] >= 0.24 and durations[3] >= 0.48 and durations[4] >= 0.95, durations

        # Her own address is not the attacker's: she waits at most the
        # account's cap, and gets in.
        started = time.perf_counter()
        signed_in = await sign_in(anon, person, metadata=from_address("198.51.100.20"))
        assert time.perf_counter() - started < 0.9
        assert signed_in.account_id == person.account_id

        # The attacker's address stays slowed down (the cap), even with the
        # right password: slowed, never locked.
        started = time.perf_counter()
        await sign_in(anon, person, metadata=attacker)
        assert time.perf_counter() - started >= 1.9

        actions = audit_actions(network)
        assert ("network.sign_in_throttled", person.account_id, "delayed") in actions
        assert [a for a, _, _ in actions].count("network.sign_in") == 2


async def test_a_flood_from_one_address_is_refused_beyond_the_cap(tmp_path, database_url):
    policy = SignInPolicy(
        throttle=ThrottlePolicy(free=0, base=_s(0.2), cap=_s(0.5), account_cap=_s(0.1))
    )
    async with network_service(
        tmp_path, database_url, policy=policy, passwords=CHEAP_PASSWORDS
    ) as network:
        anon = anonymous(network)
        request = pb.SignInRequest(login="nobody.here", password="whatever-it-is")
        await refused(anon.SignIn(request, metadata=from_address("203.0.113.9")))
        results = await asyncio.gather(
            *(anon.SignIn(request, metadata=from_address("203.0.113.9")) for _ in range(8)),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(errors) == len(results)
        codes = [e.code() for e in errors]
        # Queued attempts beyond the cap are refused at once, without a check.
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        assert grpc.StatusCode.UNAUTHENTICATED in codes


async def test_a_coordinator_needs_her_totp_code(network, clock):
    anon = anonymous(network)
    coordinator, _ = await coordinator_of(network, clock)
    assert coordinator.account.totp_required and coordinator.totp_secret
    await activate(anon, coordinator, clock)

    for code in ("", "000000"):
        error = await refused(sign_in(anon, coordinator, clock, code=code))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == SIGN_IN_FAILED
    clock.next_step()
    code = coordinator.code(clock)
    signed_in = await sign_in(anon, coordinator, clock, code=code)
    assert signed_in.role == pb.ACCOUNT_ROLE_COORDINATOR and signed_in.region == FES
    # A code is accepted once.
    error = await refused(sign_in(anon, coordinator, clock, code=code))
    assert error.details() == SIGN_IN_FAILED
    reasons = [r for a, _, r in audit_actions(network) if a == "network.sign_in_failed"]
    assert reasons.count("wrong_totp") == 3


async def test_the_token_is_masars_and_names_the_organisation_and_region(network, clock):
    anon = anonymous(network)
    person, org = await officer_of(network)
    await activate(anon, person)
    signed_in = await sign_in(anon, person)
    caller = TokenVerifier.from_env().verify(signed_in.access_token)
    assert caller.subject == person.account_id
    assert caller.role is Role.INTAKE_OFFICER
    assert (caller.org, caller.region) == (org.organisation_id, FES)
    # And the services take it: the network's own API, as this person.
    reply = await anon.GetAccount(
        pb.GetAccountRequest(account_id=person.account_id),
        metadata=(("authorization", f"Bearer {signed_in.access_token}"),),
    )
    assert reply.account.username == person.username


async def test_a_one_time_password_must_be_changed_first(network, clock):
    anon = anonymous(network)
    person, _ = await officer_of(network)
    error = await refused(sign_in(anon, person))
    assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
    signed_in = await activate(anon, person)
    assert signed_in.access_token
    error = await refused(
        anon.SignIn(pb.SignInRequest(login=person.username, password=person.password[:-1]))
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    # By e-mail address too, in any case.
    signed_in = await anon.SignIn(
        pb.SignInRequest(login=f"{person.username.upper()}@EXAMPLE.ORG", password=NEW_PASSWORD)
    )
    assert signed_in.signed_in.account_id == person.account_id


async def test_a_disabled_account_cannot_refresh(network, clock):
    anon = anonymous(network)
    person, _ = await officer_of(network)
    await activate(anon, person)
    signed_in = await sign_in(anon, person)
    refreshed = await anon.RefreshToken(
        pb.RefreshTokenRequest(refresh_token=signed_in.refresh_token)
    )
    assert refreshed.signed_in.access_token
    # A refresh token is used once.
    error = await refused(
        anon.RefreshToken(pb.RefreshTokenRequest(refresh_token=signed_in.refresh_token))
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED

    fresh = await sign_in(anon, person)
    coordinator = stub_as(network, Role.COORDINATOR, region=FES)
    await coordinator.DisableAccount(
        pb.DisableAccountRequest(
            account_id=person.account_id, reason=pb.DISABLE_REASON_LEFT_ORGANISATION
        )
    )
    error = await refused(
        anon.RefreshToken(pb.RefreshTokenRequest(refresh_token=fresh.refresh_token))
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    error = await refused(sign_in(anon, person))
    assert error.details() == SIGN_IN_FAILED

    await coordinator.EnableAccount(pb.EnableAccountRequest(account_id=person.account_id))
    assert (await sign_in(anon, person)).access_token
    actions = audit_actions(network)
    assert ("network.account_disabled", person.account_id, "left_organisation") in actions
    assert ("network.account_enabled", person.account_id, None) in actions
    assert ("network.sign_in_failed", person.account_id, "account_disabled") in actions


async def test_a_suspended_organisations_staff_cannot_sign_in_or_refresh(network, clock):
    anon = anonymous(network)
    person, org = await officer_of(network)
    await activate(anon, person)
    signed_in = await sign_in(anon, person)
    coordinator = stub_as(network, Role.COORDINATOR, region=FES)
    await coordinator.SuspendOrganisation(
        pb.SuspendOrganisationRequest(organisation_id=org.organisation_id)
    )
    error = await refused(
        anon.RefreshToken(pb.RefreshTokenRequest(refresh_token=signed_in.refresh_token))
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    error = await refused(sign_in(anon, person))
    assert error.details() == SIGN_IN_FAILED
    await coordinator.ReinstateOrganisation(
        pb.ReinstateOrganisationRequest(organisation_id=org.organisation_id)
    )
    assert (await sign_in(anon, person)).access_token
    actions = audit_actions(network)
    assert ("network.refresh_refused", person.account_id, "organisation_suspended") in actions
    assert ("network.sign_in_failed", person.account_id, "organisation_suspended") in actions


async def test_password_change_and_a_coordinators_reset_are_audited(network, clock, keyring):
    anon = anonymous(network)
    person, _ = await officer_of(network)
    await activate(anon, person)
    first = await sign_in(anon, person)

    coordinator = stub_as(network, Role.COORDINATOR, region=FES)
    reset = await coordinator.ResetPassword(pb.ResetPasswordRequest(account_id=person.account_id))
    assert reset.one_time_password and reset.account.password_change_required
    # The old password is gone, and so are her sign-ins.
    error = await refused(sign_in(anon, person))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    error = await refused(
        anon.RefreshToken(pb.RefreshTokenRequest(refresh_token=first.refresh_token))
    )
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED

    person.password = reset.one_time_password
    await activate(anon, person)
    assert (await sign_in(anon, person)).account_id == person.account_id

    # A coordinator of another region may not reset her password.
    other = stub_as(network, Role.COORDINATOR, region="oriental")
    error = await refused(
        other.ResetPassword(pb.ResetPasswordRequest(account_id=person.account_id))
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED

    actions = [(a, t) for a, t, _ in audit_actions(network)]
    assert actions.count(("network.password_changed", person.account_id)) == 2
    assert ("network.password_reset", person.account_id) in actions
    # No password, login or name in the log; the chain holds.
    with network.process.database.engine.connect() as conn:
        dump = str(conn.exec_driver_sql("SELECT * FROM audit_log").fetchall())
    for secret in (NEW_PASSWORD, reset.one_time_password, person.username, "Khadija"):
        assert secret not in dump
    assert audit.verify(network.process.database.engine, keyring=keyring).ok


async def test_a_lost_totp_device_is_reset_by_a_coordinator_of_the_region(network, clock):
    anon = anonymous(network)
    coordinator = stub_as(network, Role.COORDINATOR, region=FES)
    org = await create_org(coordinator)
    supervisor = await create_account(coordinator, org, pb.ACCOUNT_ROLE_SUPERVISOR)
    await activate(anon, supervisor, clock)
    reset = await coordinator.ResetTotp(pb.ResetTotpRequest(account_id=supervisor.account_id))
    old_secret = supervisor.totp_secret
    supervisor.totp_secret = pyotp.parse_uri(reset.totp_uri).secret
    assert supervisor.totp_secret != old_secret
    assert (await sign_in(anon, supervisor, clock)).role == pb.ACCOUNT_ROLE_SUPERVISOR
    assert ("network.totp_reset", supervisor.account_id, None) in audit_actions(network)


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
