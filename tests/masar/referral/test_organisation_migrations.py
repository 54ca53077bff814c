"""Each sector's revision 0003 (providers belong to organisations) on a
database that already holds providers and referrals, on SQLite and
PostgreSQL: the rows keep what they had and name no organisation, so their
referrals are seen by coordinators and by no staff (deny by default); the
schema then matches the models, and the revision goes down and up again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, text

from masar.contract import Sector
from masar.platform.db import Database
from masar.platform.errors import PermissionDenied
from masar.platform.identity import Caller, Role
from masar.referral import STAFF_ROLES
from masar.referral._roles import check_referral_scope
from services.employment import app as employment_app
from services.employment import models as employment_models
from services.legal import app as legal_app
from services.legal import models as legal_models
from services.shelter import app as shelter_app
from services.shelter import models as shelter_models

NOW = datetime(2030, 1, 1, 8, tzinfo=UTC)
REGION = "oriental"

# sector -> (migrations, metadata, provider table, provider id column, a provider row)
SECTORS: dict[Sector, tuple[Path, MetaData, str, str, dict[str, Any]]] = {
    Sector.SHELTER: (
        shelter_app.MIGRATIONS_DIR,
        shelter_models.Base.metadata,
        "shelters",
        "shelter_id",
        {
            "shelter_id": "shl-000000000001",
            "name": "Dar",
            "region": REGION,
            "capacity": 4,
            "accepts_children": True,
            "accessibility": "",
            "address": "enc1:opaque",
            "reserved_beds": 0,
            "occupied_beds": 0,
            "created_at": NOW,
        },
    ),
    Sector.LEGAL: (
        legal_app.MIGRATIONS_DIR,
        legal_models.Base.metadata,
        "providers",
        "provider_id",
        {
            "provider_id": "lgp-000000000001",
            "kind": "lawyer",
            "name": "Maître",
            "region": REGION,
            "created_at": NOW,
        },
    ),
    Sector.EMPLOYMENT: (
        employment_app.MIGRATIONS_DIR,
        employment_models.Base.metadata,
        "programmes",
        "programme_id",
        {
            "programme_id": "prg-000000000001",
            "name": "Couture",
            "kind": "sewing",
            "region": REGION,
            "seats": 3,
            "seats_taken": 0,
            "start_date": NOW,
            "languages": "ar",
            "created_at": NOW,
        },
    ),
}


def _alembic(database: Database, migrations: Path, step: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, step)(config, revision)


def _insert(database: Database, table: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{name}" for name in row)
    with database.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), row)


def _caller(role: Role, *, org: str = "", region: str = "") -> Caller:
    return Caller(
        subject="acc-1",
        role=role,
        org=org,
        region=region,
        issued_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )


@pytest.mark.parametrize("sector", list(SECTORS))
def test_existing_providers_and_referrals_name_no_organisation(
    database_url: str, sector: Sector
) -> None:
    migrations, metadata, table, id_column, provider = SECTORS[sector]
    provider_id = provider[id_column]
    database = Database(database_url)
    try:
        _alembic(database, migrations, "upgrade", "0002")
        _insert(database, table, provider)
        _insert(
            database,
            "referrals",
            {
                "referral_id": f"{sector.value[:3]}-0123456789abcdef",
                "case_id": "c0ffee",
                "provider_id": provider_id,
                "status": "PENDING",
                "risk": "high",
                "region": REGION,
                "idempotency_key": "k1",
                "created_at": NOW,
                "updated_at": NOW,
                "reminders": 0,
            },
        )
        _alembic(database, migrations, "upgrade", "head")
        with database.engine.connect() as conn:
            providers = conn.execute(text(f"SELECT name, region, organisation_id FROM {table}"))
            assert [tuple(row) for row in providers] == [(provider["name"], REGION, None)]
            referrals = conn.execute(
                text("SELECT provider_id, status, organisation_id FROM referrals")
            )
            assert [tuple(row) for row in referrals] == [(provider_id, "PENDING", None)]
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []

        # Such a referral: its region's coordinators, no staff (not even a
        # token naming the provider, as tokens did before organisations).
        coordinator = _caller(Role.COORDINATOR, region=REGION)
        check_referral_scope(coordinator, sector, organisation_id=None, region=REGION)
        for org in ("org-000000000001", provider_id):
            staff = _caller(STAFF_ROLES[sector], org=org)
            with pytest.raises(PermissionDenied):
                check_referral_scope(staff, sector, organisation_id=None, region=REGION)

        # Down and up again: the rows stay.
        _alembic(database, migrations, "downgrade", "0002")
        _alembic(database, migrations, "upgrade", "head")
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM referrals")).scalar_one() == 1
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        database.dispose()
