"""The network's pure rules: who manages which accounts, which roles fit
which organisations, and how repeated failures slow attempts down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from masar.platform.errors import InvalidArgument, PermissionDenied
from services.network.domain import (
    AccountRole,
    FailureCount,
    Manager,
    Organisation,
    OrganisationKind,
    OrganisationStatus,
    ServedSector,
    ThrottlePolicy,
    account_wait,
    check_account_fits,
    check_may_manage_account,
    check_may_manage_organisations,
    check_may_reset_credentials,
    check_new_password,
    claim_address_slot,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
FES, RABAT = "fes-meknes", "rabat-sale-kenitra"
POLICY = ThrottlePolicy(
    free=2, base=timedelta(seconds=1), cap=timedelta(seconds=8), account_cap=timedelta(seconds=3)
)


def manager(role: AccountRole, org: str = "", region: str = "") -> Manager:
    return Manager(subject="acc-000000000001", role=role.value, org=org, region=region)


def organisation(kind=OrganisationKind.ASSOCIATION, sectors=(), status=OrganisationStatus.ACTIVE):
    return Organisation(
        organisation_id="org-000000000001",
        name="Amal",
        kind=kind,
        region=FES,
        languages=frozenset(),
        sectors=frozenset(sectors),
        status=status,
        created_at=NOW,
        updated_at=NOW,
    )


def test_delays_double_after_the_free_failures_up_to_the_cap():
    assert [POLICY.delay(n).total_seconds() for n in range(8)] == [0, 0, 1, 2, 4, 8, 8, 8]
    assert POLICY.delay(10**9) == POLICY.cap


def test_failures_are_forgotten_after_a_while():
    count = FailureCount(failures=6, last_failure_at=NOW)
    assert count.current(POLICY, NOW + timedelta(minutes=1)) == count
    assert count.current(POLICY, NOW + POLICY.forget_after).failures == 0


def test_attempts_sent_at_once_from_one_address_queue_then_are_refused():
    count = FailureCount(failures=3, last_failure_at=NOW)
    waits = []
    for _ in range(6):
        slot = claim_address_slot(count, POLICY, NOW)
        waits.append(None if slot.refused else slot.wait.total_seconds())
        if not slot.refused:
            count = FailureCount(
                failures=3, last_failure_at=NOW, next_attempt_at=slot.next_attempt_at
            )
    assert waits == [2, 4, 6, 8, None, None]


def test_an_account_waits_but_at_most_its_own_cap():
    assert account_wait(FailureCount(failures=1), POLICY) == timedelta(0)
    assert account_wait(FailureCount(failures=30), POLICY) == POLICY.account_cap


def test_who_manages_which_account():
    fes = manager(AccountRole.COORDINATOR, region=FES)
    check_may_manage_account(fes, role=AccountRole.SUPERVISOR, organisation_id="org-a", region=FES)
    with pytest.raises(PermissionDenied):
        check_may_manage_account(
            fes, role=AccountRole.INTAKE_OFFICER, organisation_id="org-a", region=RABAT
        )
    with pytest.raises(PermissionDenied):
        check_may_manage_account(
            fes, role=AccountRole.COORDINATOR, organisation_id="org-a", region=FES
        )
    check_may_manage_account(
        manager(AccountRole.NETWORK_ADMIN),
        role=AccountRole.COORDINATOR,
        organisation_id="org-a",
        region=RABAT,
    )
    supervisor = manager(AccountRole.SUPERVISOR, org="org-a", region=FES)
    check_may_manage_account(
        supervisor, role=AccountRole.SHELTER_STAFF, organisation_id="org-a", region=FES
    )
    with pytest.raises(PermissionDenied):
        check_may_manage_account(
            supervisor, role=AccountRole.INTAKE_OFFICER, organisation_id="org-b", region=FES
        )
    with pytest.raises(PermissionDenied):
        check_may_manage_account(
            manager(AccountRole.INTAKE_OFFICER, org="org-a", region=FES),
            role=AccountRole.INTAKE_OFFICER,
            organisation_id="org-a",
            region=FES,
        )


def test_credentials_are_reset_by_a_coordinator_of_the_region_only():
    check_may_reset_credentials(
        manager(AccountRole.COORDINATOR, region=FES), role=AccountRole.SUPERVISOR, region=FES
    )
    for who in (
        manager(AccountRole.COORDINATOR, region=RABAT),
        manager(AccountRole.SUPERVISOR, org="org-a", region=FES),
    ):
        with pytest.raises(PermissionDenied):
            check_may_reset_credentials(who, role=AccountRole.INTAKE_OFFICER, region=FES)


def test_organisations_are_managed_in_the_coordinators_region():
    check_may_manage_organisations(manager(AccountRole.COORDINATOR, region=FES), FES)
    check_may_manage_organisations(manager(AccountRole.NETWORK_ADMIN), RABAT)
    with pytest.raises(PermissionDenied):
        check_may_manage_organisations(manager(AccountRole.COORDINATOR, region=FES), RABAT)


def test_roles_fit_the_organisation():
    check_account_fits(
        AccountRole.CARE_UNIT_OFFICER, organisation(OrganisationKind.GENDARMERIE_CARE_UNIT)
    )
    check_account_fits(AccountRole.LEGAL_AID, organisation(sectors=[ServedSector.LEGAL]))
    for role, org, field in (
        (AccountRole.CARE_UNIT_OFFICER, organisation(), "role"),
        (AccountRole.LEGAL_AID, organisation(sectors=[ServedSector.SHELTER]), "role"),
        (
            AccountRole.INTAKE_OFFICER,
            organisation(status=OrganisationStatus.SUSPENDED),
            "organisation_id",
        ),
    ):
        with pytest.raises(InvalidArgument) as caught:
            check_account_fits(role, org)
        assert caught.value.field == field


def test_a_new_password_is_long_and_not_the_login():
    check_new_password("a long enough passphrase", logins=("amina",), field="new_password")
    for bad in ("short", "x" * 300, "amina-is-my-password"):
        with pytest.raises(InvalidArgument) as caught:
            check_new_password(bad, logins=("amina",), field="new_password")
        assert caught.value.field == "new_password"
