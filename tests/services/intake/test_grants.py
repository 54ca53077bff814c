"""Emergency access grants: a reason, a window, an audit trail, then nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from masar.platform import audit
from masar.platform.crypto import Keyring, install_keyring
from masar.platform.db import Database, new_metadata
from masar.platform.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from masar.platform.identity import Caller, Role
from services.intake.grants import (
    ACTION_GRANTED,
    ACTION_REVOKED,
    DEFAULT_GRANT_TTL,
    EmergencyAccess,
    GrantReason,
    emergency_grants_table,
)

T0 = datetime(2026, 5, 1, 22, 0, tzinfo=UTC)


def _caller(role: Role, region: str = "oriental", subject: str = "u-coord") -> Caller:
    return Caller(
        subject=subject,
        role=role,
        region=region,
        org="assoc-1" if role is Role.INTAKE_OFFICER else "",
        issued_at=T0 - timedelta(hours=1),
        expires_at=T0 + timedelta(days=1),
    )


COORDINATOR = _caller(Role.COORDINATOR)


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


def test_grant_opens_the_case_for_its_window_then_expires(setup) -> None:
    db, access, clock, ring = setup
    check = {"case_id": "c-far", "case_region": "souss-massa"}
    with pytest.raises(PermissionDenied, match="emergency grant"):
        db.call(lambda s: access.check_case_access(s, COORDINATOR, **check))

    grant = db.call(
        lambda s: access.open_grant(
            s,
            COORDINATOR,
            reason=GrantReason.SURVIVOR_RELOCATED,
            note="Marker-note-5521 fled to Agadir",
            **check,
        )
    )
    assert grant.expires_at - grant.granted_at == DEFAULT_GRANT_TTL == timedelta(hours=3)

    clock.now = T0 + timedelta(hours=2, minutes=59)
    seen = db.call(
        lambda s: access.check_case_access(s, COORDINATOR, audit_action="case.read", **check)
    )
    assert seen.via_grant and seen.grant and seen.grant.grant_id == grant.grant_id
    # Only for that case, and only for her.
    with pytest.raises(PermissionDenied):
        db.call(
            lambda s: access.check_case_access(
                s, COORDINATOR, case_id="c-other", case_region="souss-massa"
            )
        )
    colleague = _caller(Role.COORDINATOR, subject="u-other")
    with pytest.raises(PermissionDenied):
        db.call(lambda s: access.check_case_access(s, colleague, **check))

    clock.now = T0 + timedelta(hours=3)
    with pytest.raises(PermissionDenied):
        db.call(lambda s: access.check_case_access(s, COORDINATOR, **check))

    entries = db.call(lambda s: audit.entries_for_case(s, "c-far"))
    assert [(e.action, e.target, e.reason) for e in entries] == [
        (ACTION_GRANTED, grant.grant_id, "survivor_relocated"),
        ("case.read", grant.grant_id, "emergency_grant"),
    ]
    assert audit.verify(db.engine, keyring=ring).ok
    # The note is stored encrypted; the audit log holds only codes.
    raw = db.call(lambda s: s.execute(text("SELECT note FROM emergency_grants")).scalar_one())
    assert "Marker-note" not in raw
    dump = db.call(lambda s: [tuple(r) for r in s.execute(text("SELECT * FROM audit_log"))])
    assert "Marker-note" not in repr(dump)


def test_own_region_needs_no_grant_and_other_roles_get_none(setup) -> None:
    db, access, _clock, _ring = setup
    own = {"case_id": "c-near", "case_region": "oriental"}
    assert not db.call(lambda s: access.check_case_access(s, COORDINATOR, **own)).via_grant
    with pytest.raises(FailedPrecondition):
        db.call(lambda s: access.open_grant(s, COORDINATOR, reason="imminent_danger", **own))
    far = {"case_id": "c-far", "case_region": "souss-massa"}
    for role in (Role.OPERATOR, Role.INTAKE_OFFICER):
        with pytest.raises(PermissionDenied):
            db.call(
                lambda s, role=role: access.open_grant(
                    s, _caller(role), reason="imminent_danger", **far
                )
            )
    with pytest.raises(InvalidArgument, match="reason"):
        db.call(lambda s: access.open_grant(s, COORDINATOR, reason="curious", **far))
    with pytest.raises(InvalidArgument, match="ttl"):
        db.call(
            lambda s: access.open_grant(
                s, COORDINATOR, reason="imminent_danger", ttl=timedelta(days=1), **far
            )
        )


def test_revoked_grant_opens_nothing(setup) -> None:
    db, access, clock, _ring = setup
    far = {"case_id": "c-far", "case_region": "souss-massa"}
    grant = db.call(lambda s: access.open_grant(s, COORDINATOR, reason="covering_absence", **far))
    clock.now = T0 + timedelta(minutes=10)
    db.call(lambda s: access.revoke(s, COORDINATOR, grant.grant_id))
    with pytest.raises(PermissionDenied):
        db.call(lambda s: access.check_case_access(s, COORDINATOR, **far))
    actions = [e.action for e in db.call(lambda s: audit.entries_for_case(s, "c-far"))]
    assert actions == [ACTION_GRANTED, ACTION_REVOKED]
