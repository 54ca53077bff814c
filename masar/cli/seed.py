"""Sample data for the local stack: the referral network — organisations and
one account per role (masar.cli.seed_network) — then the sectors' reference
data: shelters, legal aid providers, training programmes, hospital care
units and psychosocial support in several regions. Every create carries a
fixed idempotency key, so seeding twice changes nothing. Names are
illustrative.

Seeding bootstraps the stack, so it acts through the local stack's own key
(the development shortcut) whoever is signed in: each region's coordinator
registers her region's reference data."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from masar.cli import connect
from masar.cli.seed_network import Organisations, seed_accounts, seed_organisations
from masar.contract import ServiceName
from masar.platform.identity import Role
from masar.v1 import (
    employment_pb2,
    employment_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    legal_pb2,
    legal_pb2_grpc,
    psychosocial_pb2,
    psychosocial_pb2_grpc,
    shelter_pb2,
    shelter_pb2_grpc,
)

REGIONS = ["fes-meknes", "casablanca-settat", "rabat-sale-kenitra", "marrakech-safi", "oriental"]

# (name, capacity, accepts children, accessibility)
SHELTERS: dict[str, list[tuple[str, int, bool, list[Any]]]] = {
    "fes-meknes": [
        ("Dar Al Amane — Fès", 12, True, [shelter_pb2.ACCESSIBILITY_FEATURE_GROUND_FLOOR]),
        ("Maison Nour — Meknès", 8, True, []),
        ("Foyer Tilila — Fès", 6, False, [shelter_pb2.ACCESSIBILITY_FEATURE_WHEELCHAIR]),
    ],
    "casablanca-settat": [
        ("Dar Touria — Casablanca", 20, True, [shelter_pb2.ACCESSIBILITY_FEATURE_WHEELCHAIR]),
        ("Centre Amal — Settat", 10, True, []),
    ],
    "rabat-sale-kenitra": [("Dar Assafa — Salé", 14, True, [])],
    "marrakech-safi": [("Dar Lalla — Marrakech", 10, True, [])],
    "oriental": [("Maison Annour — Oujda", 8, True, [])],
}

LEGAL: dict[str, list[tuple[str, Any, list[str], list[Any]]]] = {
    region: [
        (
            f"Cellule de prise en charge — tribunal de première instance ({region})",
            legal_pb2.LEGAL_PROVIDER_KIND_COURT_CARE_CELL,
            ["ar", "ary", "fr"],
            [legal_pb2.LEGAL_MATTER_PROTECTION_ORDER, legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT],
        ),
        (
            f"Association d'aide juridique ({region})",
            legal_pb2.LEGAL_PROVIDER_KIND_LEGAL_AID_ASSOCIATION,
            ["ar", "ary", "zgh", "fr"],
            [
                legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
                legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT,
                legal_pb2.LEGAL_MATTER_FAMILY_LAW,
                legal_pb2.LEGAL_MATTER_RESIDENCY,
                legal_pb2.LEGAL_MATTER_TRAFFICKING,
            ],
        ),
        (
            f"Cabinet d'avocate partenaire ({region})",
            legal_pb2.LEGAL_PROVIDER_KIND_LAWYER,
            ["ar", "fr", "en"],
            [legal_pb2.LEGAL_MATTER_FAMILY_LAW, legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT],
        ),
    ]
    for region in REGIONS
}

# Which sample organisation (masar.cli.seed_network) each kind of legal provider is.
LEGAL_ORGANISATIONS: dict[Any, str] = {
    legal_pb2.LEGAL_PROVIDER_KIND_COURT_CARE_CELL: "court",
    legal_pb2.LEGAL_PROVIDER_KIND_LEGAL_AID_ASSOCIATION: "legal",
    # The partner lawyer works with the women's rights association.
    legal_pb2.LEGAL_PROVIDER_KIND_LAWYER: "association-2",
}

PROGRAMMES: list[tuple[str, Any, int]] = [
    ("Pâtisserie et confiserie", employment_pb2.PROGRAMME_KIND_CONFECTIONERY, 12),
    ("Couture", employment_pb2.PROGRAMME_KIND_SEWING, 15),
    ("Cuisine", employment_pb2.PROGRAMME_KIND_COOKERY, 10),
    ("Alphabétisation", employment_pb2.PROGRAMME_KIND_LITERACY, 20),
    ("Compétences numériques", employment_pb2.PROGRAMME_KIND_DIGITAL_SKILLS, 12),
]

# Each region's hospital care unit (run by the sample hospital) offers every kind of care.
CARE_SERVICES: list[Any] = [
    health_pb2.CARE_SERVICE_PEP,
    health_pb2.CARE_SERVICE_EMERGENCY_CONTRACEPTION,
    health_pb2.CARE_SERVICE_FORENSIC_EXAM,
    health_pb2.CARE_SERVICE_CERTIFICATE,
]
# Each region's listening and support service (run by the sample association).
SUPPORT_KINDS: list[Any] = [
    psychosocial_pb2.SUPPORT_KIND_COUNSELLING,
    psychosocial_pb2.SUPPORT_KIND_GROUP_SUPPORT,
    psychosocial_pb2.SUPPORT_KIND_SOCIAL_SUPPORT,
]


async def seed() -> dict[str, Any]:
    """What was seeded: the network's organisations and accounts (with the
    first passwords of those created now), and the reference data counts."""
    organisations = await seed_organisations()
    accounts = await seed_accounts(organisations)
    counts = await seed_reference_data(organisations)
    return {"organisations": len(organisations), "accounts": accounts, **counts}


async def seed_reference_data(organisations: Organisations | None = None) -> dict[str, int]:
    """Shelters, legal aid providers, programmes, care units and
    psychosocial providers, each run by an organisation of the sample
    network (whose organisations are seeded first when not given; its
    accounts only by `seed`)."""
    found = organisations if organisations is not None else await seed_organisations()
    orgs = {key: org.organisation_id for key, org in found.items()}
    counts = {
        "shelters": 0,
        "legal_providers": 0,
        "programmes": 0,
        "care_units": 0,
        "psychosocial_providers": 0,
    }
    start = (datetime.now(UTC) + timedelta(days=14)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    # Each region's coordinator registers her region's reference data.
    for region, shelters in SHELTERS.items():
        async with _channel("shelter", region) as chan:
            shelter = shelter_pb2_grpc.ShelterServiceStub(chan)
            for i, (name, capacity, children, access) in enumerate(shelters):
                request = shelter_pb2.CreateShelterRequest(
                    name=name,
                    region=region,
                    capacity=capacity,
                    accepts_children=children,
                    accessibility=access,
                    address=f"adresse confidentielle {i + 1}, {region}",
                    # The first run by the shelter operator, the others by the centre.
                    organisation_id=orgs[(region, "shelter" if i == 0 else "centre")],
                    idempotency_key=f"seed-shelter-{region}-{i}",
                )
                await connect.rpc("shelter", _bind(shelter.CreateShelter, request))
                counts["shelters"] += 1
    for region, providers in LEGAL.items():
        async with _channel("legal", region) as chan:
            legal = legal_pb2_grpc.LegalAidServiceStub(chan)
            for i, (name, kind, languages, matters) in enumerate(providers):
                legal_request = legal_pb2.CreateLegalProviderRequest(
                    kind=kind,
                    name=name,
                    region=region,
                    languages=languages,
                    matters=matters,
                    organisation_id=orgs[(region, LEGAL_ORGANISATIONS[kind])],
                    idempotency_key=f"seed-legal-{region}-{i}",
                )
                await connect.rpc("legal", _bind(legal.CreateProvider, legal_request))
                counts["legal_providers"] += 1
    for region in REGIONS:
        async with _channel("employment", region) as chan:
            employment = employment_pb2_grpc.EmploymentServiceStub(chan)
            for i, (name, kind, seats) in enumerate(PROGRAMMES):
                programme = employment_pb2.CreateProgrammeRequest(
                    name=f"{name} ({region})",
                    kind=kind,
                    region=region,
                    seats=seats,
                    languages=["ar", "ary", "fr"],
                    organisation_id=orgs[(region, "training")],
                    idempotency_key=f"seed-programme-{region}-{i}",
                )
                programme.start_date.FromDatetime(start)
                await connect.rpc("employment", _bind(employment.CreateProgramme, programme))
                counts["programmes"] += 1
    for region in REGIONS:
        async with _channel("health", region) as chan:
            health = health_pb2_grpc.HealthServiceStub(chan)
            unit = health_pb2.CreateCareUnitRequest(
                name=f"Unité intégrée de prise en charge des femmes — CHU ({region})",
                region=region,
                services=CARE_SERVICES,
                languages=["ar", "ary", "fr"],
                organisation_id=orgs[(region, "hospital")],
                idempotency_key=f"seed-care-unit-{region}",
            )
            await connect.rpc("health", _bind(health.CreateCareUnit, unit))
            counts["care_units"] += 1
        async with _channel("psychosocial", region) as chan:
            support = psychosocial_pb2_grpc.PsychosocialServiceStub(chan)
            provider = psychosocial_pb2.CreateSupportProviderRequest(
                name=f"Écoute et soutien psychosocial ({region})",
                region=region,
                kinds=SUPPORT_KINDS,
                languages=["ar", "ary", "zgh", "fr"],
                organisation_id=orgs[(region, "association")],
                idempotency_key=f"seed-psychosocial-{region}",
            )
            await connect.rpc("psychosocial", _bind(support.CreateSupportProvider, provider))
            counts["psychosocial_providers"] += 1
    return counts


def _channel(service: ServiceName, region: str) -> AbstractAsyncContextManager[grpc.aio.Channel]:
    """A channel acting as the region's coordinator, through the local key."""
    coordinator = connect.Identity(Role.COORDINATOR, region=region)
    return connect.channel(service, coordinator, source=connect.local_token(coordinator))


def _bind(method: Any, request: Any) -> Any:
    return lambda: method(request)
