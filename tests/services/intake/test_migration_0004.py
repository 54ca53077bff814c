"""Migration 0004 on cases from before it (SQLite and PostgreSQL): no source;
the holder is the organisation named by the token that registered the case
(its audit entry), or none — and then only coordinators see the case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from masar.platform import audit
from masar.platform.db import Database, migrate
from masar.platform.identity import Caller, Role
from services.intake.app import MIGRATIONS_DIR
from services.intake.repository import CaseRepository, Page
from services.intake.scope import CaseFilter

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _upgrade_to(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)


def _officer(org: str) -> Caller:
    return Caller(
        subject=f"officer-{org or 'none'}",
        role=Role.INTAKE_OFFICER,
        org=org,
        issued_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(hours=1),
    )


def test_existing_cases_get_their_registrars_organisation_or_none(database_url: str) -> None:
    _upgrade_to(database_url, "0003")
    db = Database(database_url)
    try:
        cases = sa.table("cases", *(sa.column(n, t) for n, t in COLUMNS.items()))
        registrars = {"c0000000000000a1": "org-assoc-1", "c0000000000000b2": ""}
        with db.unit_of_work() as session:
            for case_id, org in registrars.items():
                session.execute(sa.insert(cases).values(**row(case_id)))
                audit.append(session, actor=_officer(org), action="case.register", case_id=case_id)
                # A later reader of another organisation does not change the holder.
                audit.append(
                    session, actor=_officer("org-other"), action="case.read", case_id=case_id
                )
        migrate(db, MIGRATIONS_DIR)
        with db.unit_of_work() as session:
            found = {
                r.case_id: (r.source_organisation_id, r.holding_organisation_id)
                for r in session.execute(
                    sa.text(
                        "SELECT case_id, source_organisation_id, holding_organisation_id FROM cases"
                    )
                )
            }
            assert found == {
                "c0000000000000a1": (None, "org-assoc-1"),
                "c0000000000000b2": (None, None),
            }
            repo = CaseRepository.from_session(session)
            page = Page(limit=10)

            def listed(scope: CaseFilter) -> set[str]:
                return {
                    s.case_id for s in repo.list(scope=scope, risk=None, status=None, page=page)[0]
                }

            assert listed(CaseFilter(holding_organisation_id="org-assoc-1")) == {"c0000000000000a1"}
            # No holder recorded: no organisation's officers see it (not even
            # a token that names none); its region's coordinators do.
            assert listed(CaseFilter(holding_organisation_id="")) == set()
            assert listed(CaseFilter(region="fes-meknes")) == set(registrars)
        assert audit.verify(db.engine).ok
    finally:
        db.dispose()


_JSON = sa.JSON()
_AT = sa.DateTime(timezone=True)
COLUMNS: dict[str, Any] = {
    "case_id": sa.String(),
    "region": sa.String(),
    "status": sa.String(),
    "risk": sa.String(),
    "risk_assessment_id": sa.String(),
    "created_at": _AT,
    "updated_at": _AT,
    "reopen_count": sa.Integer(),
    "languages": _JSON,
    "accompanying_children": sa.Integer(),
    "incident_at": _AT,
    "violence_type": sa.String(),
    "incident_contexts": _JSON,
    "needs": _JSON,
    "declined": _JSON,
    "accessibility_needs": _JSON,
    "legal_matters": _JSON,
    "employment_interests": _JSON,
}


def row(case_id: str) -> dict[str, object]:
    return {
        "case_id": case_id,
        "region": "fes-meknes",
        "status": "open",
        "risk": "high",
        "risk_assessment_id": f"risk-{case_id}",
        "created_at": NOW,
        "updated_at": NOW,
        "reopen_count": 0,
        "languages": [],
        "accompanying_children": 0,
        "incident_at": NOW - timedelta(hours=5),
        "violence_type": "physical_assault",
        "incident_contexts": [],
        "needs": [],
        "declined": [],
        "accessibility_needs": [],
        "legal_matters": [],
        "employment_interests": [],
    }
