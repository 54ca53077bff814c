"""Emergency access grants, by four eyes: a request with a reason, a second
person's approval, a window counted from it, an audit trail, then nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from masar.platform import audit
from masar.platform.crypto import Keyring, install_keyring
from masar.platform.db import Database, migrate, new_metadata
from masar.platform.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from masar.platform.identity import Caller, Role
from services.intake.app import MIGRATIONS_DIR
from services.intake.grants import (
    ACTION_APPROVED,
    ACTION_REFUSED,
    ACTION_REQUESTED,
    ACTION_REVOKED,
    DEFAULT_GRANT_TTL,
    REQUEST_TTL,
    Decision,
    EmergencyAccess,
    EmergencyGrant,
    GrantCase,
    GrantReason,
    GrantStatus,
    emergency_grants_table,
)

T0 = datetime(2026, 5, 1, 22, 0, tzinfo=UTC)
ORIENTAL, SOUSS = "oriental", "souss-massa"
HOLDER = "org-holder-1"


def _caller(
    role: Role, region: str = ORIENTAL, subject: str = "u-coord", org: str | None = None
) -> Caller:
    return Caller(
        subject=subject,
        role=role,
        region=region,
        org=org if org is not None else ("assoc-1" if role is Role.INTAKE_OFFICER else ""),
        issued_at=T0 - timedelta(hours=1),
        expires_at=T0 + timedelta(days=1),
    )


COORDINATOR = _caller(Role.COORDINATOR)  # Oriental: the requester
SOUSS_COORD = _caller(Role.COORDINATOR, SOUSS, "u-souss")  # the case's region: approves
SOUSS_COORD_2 = _caller(Role.COORDINATOR, SOUSS, "u-souss-2")
ORIENTAL_COORD = _caller(Role.COORDINATOR, ORIENTAL, "u-oriental-2")  # her region, not the case's
SUPERVISOR = _caller(Role.SUPERVISOR, SOUSS, "u-super", org=HOLDER)
OTHER_SUPERVISOR = _caller(Role.SUPERVISOR, SOUSS, "u-super-x", org="org-other")
FAR = GrantCase("c-far", SOUSS, HOLDER)
FAR_CHECK = {"case_id": "c-far", "case_region": SOUSS}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def setup(database_url):
    ring = Keyring.generate("k1")
    install_keyring(ring)  # the encrypted note column uses the process ring
    metadata = new_metadata()
    grants = emergency_grants_table(metadata)
    audit.audit_tables(metadata)
    db = Database(database_url)
    metadata.create_all(db.engine)
    clock = Clock()
    yield db, EmergencyAccess(grants, keyring=ring, clock=clock), clock, ring
    db.dispose()
    install_keyring(None)


def _ask(db, access, caller=COORDINATOR, **extra) -> EmergencyGrant:
    extra.setdefault("reason", GrantReason.SURVIVOR_RELOCATED)
    return db.call(lambda s: access.open_grant(s, caller, **FAR_CHECK, **extra))


def _step(db, access, step: str, caller: Caller, grant_id: str, case: GrantCase = FAR):
    def work(s):
        return getattr(access, step)(s, caller, access.get(s, grant_id), case)

    return db.call(work)


def _can_read(db, access, caller=COORDINATOR) -> bool:
    try:
        db.call(lambda s: access.check_case_access(s, caller, **FAR_CHECK))
    except PermissionDenied:
        return False
    return True


def test_a_request_opens_nothing_until_a_second_coordinator_approves(setup) -> None:
    db, access, clock, ring = setup
    assert not _can_read(db, access)
    grant = _ask(db, access, note="Marker-note-5521 fled to Agadir")
    assert grant.status(T0) is GrantStatus.PENDING and grant.granted_at is None
    assert not _can_read(db, access)  # asked is not approved

    # An hour later a coordinator of the case's region approves: the window
    # starts then.
    clock.now = T0 + timedelta(hours=1)
    approved = _step(db, access, "approve", SOUSS_COORD, grant.grant_id)
    assert approved.status(clock.now) is GrantStatus.ACTIVE
    assert approved.granted_at == clock.now and approved.decided_by == "u-souss"
    assert approved.expires_at == clock.now + DEFAULT_GRANT_TTL == T0 + timedelta(hours=4)

    clock.now = T0 + timedelta(hours=3, minutes=59)
    seen = db.call(
        lambda s: access.check_case_access(s, COORDINATOR, audit_action="case.read", **FAR_CHECK)
    )
    assert seen.via_grant and seen.grant and seen.grant.grant_id == grant.grant_id
    # Only for that case, and only for her.
    with pytest.raises(PermissionDenied):
        db.call(
            lambda s: access.check_case_access(s, COORDINATOR, case_id="c-other", case_region=SOUSS)
        )
    assert not _can_read(db, access, _caller(Role.COORDINATOR, subject="u-other"))

    # Three hours from the approval (not from the request), it ends by itself.
    clock.now = T0 + timedelta(hours=4)
    assert not _can_read(db, access)
    assert EmergencyGrant.from_row(
        db.call(lambda s: s.execute(select(access._grants)).mappings().one())
    ).status(clock.now) is (GrantStatus.EXPIRED)

    entries = db.call(lambda s: audit.entries_for_case(s, "c-far"))
    assert [(e.action, e.actor, e.target, e.reason) for e in entries] == [
        (ACTION_REQUESTED, "u-coord", grant.grant_id, "survivor_relocated"),
        (ACTION_APPROVED, "u-souss", grant.grant_id, "survivor_relocated"),
        ("case.read", "u-coord", grant.grant_id, "emergency_grant"),
    ]
    assert audit.verify(db.engine, keyring=ring).ok
    # The note is stored encrypted; the audit log holds only codes.
    raw = db.call(lambda s: s.execute(text("SELECT note FROM emergency_grants")).scalar_one())
    assert "Marker-note" not in raw
    dump = db.call(lambda s: [tuple(r) for r in s.execute(text("SELECT * FROM audit_log"))])
    assert "Marker-note" not in repr(dump)


def test_only_a_second_person_in_scope_decides(setup) -> None:
    db, access, _clock, _ring = setup
    grant = _ask(db, access)
    # Never the requester herself (not even as another role on a new token).
    for caller in (COORDINATOR, _caller(Role.SUPERVISOR, SOUSS, "u-coord", org=HOLDER)):
        for step in ("approve", "refuse"):
            with pytest.raises(PermissionDenied, match="never by its requester"):
                _step(db, access, step, caller, grant.grant_id)
    # Not a coordinator of another region (hers included), not another
    # organisation's supervisor, not an officer.
    for caller in (ORIENTAL_COORD, OTHER_SUPERVISOR, _caller(Role.INTAKE_OFFICER, SOUSS, "u-o")):
        with pytest.raises(PermissionDenied):
            _step(db, access, "approve", caller, grant.grant_id)
    # The case's region is the one it has now: had it moved, its old
    # region's coordinators no longer decide.
    moved = GrantCase("c-far", "draa-tafilalet", HOLDER)
    with pytest.raises(PermissionDenied):
        _step(db, access, "approve", SOUSS_COORD, grant.grant_id, moved)
    assert not _can_read(db, access)

    # A supervisor of the holding organisation may approve.
    approved = _step(db, access, "approve", SUPERVISOR, grant.grant_id)
    assert approved.decided_role == "supervisor" and _can_read(db, access)
    # Decided once: a second decision is refused.
    for step in ("approve", "refuse"):
        with pytest.raises(FailedPrecondition, match="active"):
            _step(db, access, step, SOUSS_COORD_2, grant.grant_id)


def test_a_refused_or_lapsed_request_opens_nothing(setup) -> None:
    db, access, clock, _ring = setup
    refused = _step(db, access, "refuse", SOUSS_COORD, _ask(db, access).grant_id)
    assert refused.decision is Decision.REFUSED and refused.status(T0) is GrantStatus.REFUSED
    with pytest.raises(FailedPrecondition, match="refused"):
        _step(db, access, "approve", SOUSS_COORD_2, refused.grant_id)
    with pytest.raises(FailedPrecondition, match="nothing to revoke"):
        _step(db, access, "revoke", COORDINATOR, refused.grant_id)
    assert not _can_read(db, access)

    late = _ask(db, access)
    clock.now = T0 + REQUEST_TTL
    with pytest.raises(FailedPrecondition, match="lapsed"):
        _step(db, access, "approve", SOUSS_COORD, late.grant_id)
    assert not _can_read(db, access)
    actions = [e.action for e in db.call(lambda s: audit.entries_for_case(s, "c-far"))]
    assert actions == [ACTION_REQUESTED, ACTION_REFUSED, ACTION_REQUESTED]


def test_only_its_holder_its_approver_or_a_supervisor_revokes(setup) -> None:
    db, access, clock, _ring = setup

    def approved_grant() -> EmergencyGrant:
        return _step(db, access, "approve", SOUSS_COORD, _ask(db, access).grant_id)

    grant = approved_grant()
    # Another coordinator — of the case's region, or of hers — may not.
    for caller in (SOUSS_COORD_2, ORIENTAL_COORD, OTHER_SUPERVISOR):
        with pytest.raises(PermissionDenied, match="revoked by its holder"):
            _step(db, access, "revoke", caller, grant.grant_id)
    assert _can_read(db, access)
    for revoker in (COORDINATOR, SOUSS_COORD, SUPERVISOR):  # holder, approver, supervisor
        clock.now += timedelta(minutes=10)
        grant = approved_grant() if revoker is not COORDINATOR else grant
        revoked = _step(db, access, "revoke", revoker, grant.grant_id)
        assert revoked.revoked_at == clock.now and revoked.revoked_by == revoker.subject
        assert revoked.status(clock.now) is GrantStatus.REVOKED
        assert not _can_read(db, access)
        # A second revocation changes nothing.
        again = _step(db, access, "revoke", revoker, grant.grant_id)
        assert again.revoked_at == revoked.revoked_at
    # The holder may withdraw a pending request; it can no longer be approved.
    pending = _ask(db, access)
    _step(db, access, "revoke", COORDINATOR, pending.grant_id)
    with pytest.raises(FailedPrecondition, match="revoked"):
        _step(db, access, "approve", SOUSS_COORD, pending.grant_id)
    revocations = [
        (e.action, e.actor)
        for e in db.call(lambda s: audit.entries_for_case(s, "c-far"))
        if e.action == ACTION_REVOKED
    ]
    assert revocations == [
        (ACTION_REVOKED, "u-coord"),
        (ACTION_REVOKED, "u-souss"),
        (ACTION_REVOKED, "u-super"),
        (ACTION_REVOKED, "u-coord"),
    ]


def test_own_region_needs_no_grant_and_other_roles_get_none(setup) -> None:
    db, access, _clock, _ring = setup
    own = {"case_id": "c-near", "case_region": ORIENTAL}
    assert not db.call(lambda s: access.check_case_access(s, COORDINATOR, **own)).via_grant
    with pytest.raises(FailedPrecondition):
        db.call(lambda s: access.open_grant(s, COORDINATOR, reason="imminent_danger", **own))
    for role in (Role.OPERATOR, Role.INTAKE_OFFICER, Role.SUPERVISOR):
        with pytest.raises(PermissionDenied):
            db.call(
                lambda s, role=role: access.open_grant(
                    s, _caller(role), reason="imminent_danger", **FAR_CHECK
                )
            )
    with pytest.raises(InvalidArgument, match="reason"):
        db.call(lambda s: access.open_grant(s, COORDINATOR, reason="curious", **FAR_CHECK))
    with pytest.raises(InvalidArgument, match="ttl"):
        _ask(db, access, ttl=timedelta(days=1))


def test_lists_are_scoped(setup) -> None:
    db, access, clock, _ring = setup
    mine = _ask(db, access)
    clock.now += timedelta(seconds=1)  # requested after `mine`: newest first is well defined
    elsewhere = db.call(
        lambda s: access.open_grant(
            s, COORDINATOR, case_id="c-rabat", case_region="rabat", reason="court_request"
        )
    )
    clock.now += timedelta(minutes=1)
    _step(db, access, "approve", SOUSS_COORD, mine.grant_id)

    def listed(caller: Caller, **filters) -> list[str]:
        held = select(sa.literal("c-far"))  # the holder's cases: c-far only
        page = db.call(lambda s: access.list_grants(s, caller, held_cases=held, **filters))
        return [g.grant_id for g in page.grants]

    assert listed(COORDINATOR) == [elsewhere.grant_id, mine.grant_id]  # hers, newest first
    assert listed(SOUSS_COORD) == [mine.grant_id]  # on her region's cases
    assert listed(SUPERVISOR) == [mine.grant_id]  # on her organisation's cases
    assert listed(ORIENTAL_COORD) == []
    assert listed(COORDINATOR, status=GrantStatus.PENDING) == [elsewhere.grant_id]
    assert listed(COORDINATOR, status=GrantStatus.ACTIVE) == [mine.grant_id]
    assert listed(COORDINATOR, case_id="c-far") == [mine.grant_id]
    first = db.call(lambda s: access.list_grants(s, COORDINATOR, page_size=1))
    assert [g.grant_id for g in first.grants] == [elsewhere.grant_id] and first.next_page_token
    rest = db.call(
        lambda s: access.list_grants(s, COORDINATOR, page_size=1, page_token=first.next_page_token)
    )
    assert [g.grant_id for g in rest.grants] == [mine.grant_id] and not rest.next_page_token
    with pytest.raises(PermissionDenied):
        listed(_caller(Role.INTAKE_OFFICER))


# --- migration 0005: grants from before ------------------------------------------------------


def _upgrade_to(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)


def test_migration_0005_keeps_earlier_grants_and_ends_open_ones(database_url) -> None:
    _upgrade_to(database_url, "0004")
    db = Database(database_url)
    old = sa.table(
        "emergency_grants",
        *(
            sa.column(name)
            for name in (
                "grant_id",
                "case_id",
                "subject",
                "role",
                "org",
                "region",
                "case_region",
                "reason",
                "granted_at",
                "expires_at",
                "revoked_at",
                "revoked_by",
            )
        ),
    )
    now = datetime.now(UTC)
    base = {
        "case_id": "c-far",
        "subject": "u-coord",
        "role": "coordinator",
        "org": "",
        "region": ORIENTAL,
        "case_region": SOUSS,
        "reason": "imminent_danger",
    }
    try:
        with db.unit_of_work() as s:
            s.execute(
                sa.insert(old).values(
                    grant_id="egr-open",
                    granted_at=now - timedelta(hours=1),
                    expires_at=now + timedelta(hours=2),
                    **base,
                )
            )
            s.execute(
                sa.insert(old).values(
                    grant_id="egr-past",
                    granted_at=now - timedelta(days=2),
                    expires_at=now - timedelta(days=2) + timedelta(hours=3),
                    **base,
                )
            )
        migrate(db, MIGRATIONS_DIR)
        metadata = new_metadata()
        table = emergency_grants_table(metadata)
        with db.unit_of_work() as s:
            grants = {
                g.grant_id: g
                for g in (
                    EmergencyGrant.from_row(row)
                    for row in s.execute(select(table)).mappings().all()
                )
            }
        assert {k: (g.decision, g.ttl, g.decided_by) for k, g in grants.items()} == {
            "egr-open": (Decision.APPROVED, timedelta(hours=3), None),
            "egr-past": (Decision.APPROVED, timedelta(hours=3), None),
        }
        # Opened by one person alone: the one still open is ended.
        assert grants["egr-open"].revoked_by == "migration-0005"
        assert grants["egr-open"].status(now) is GrantStatus.REVOKED
        assert grants["egr-past"].revoked_at is None
        assert grants["egr-past"].status(now) is GrantStatus.EXPIRED
        assert grants["egr-past"].requested_at == grants["egr-past"].granted_at
    finally:
        db.dispose()
