"""`masar providers`: who can take a referral in a region, before a coordinator
names one (`masar case reassign ... --provider ID`).

Through each sector's own list RPC (ListShelters, ListProviders,
ListProgrammes, ListCareUnits, ListSupportProviders), as the region's
coordinator. A shelter or a programme is listed when it has a free bed or
seat; every legal aid provider, care unit and psychosocial provider of the
region is (they have no capacity count).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from masar import contract as c
from masar.cli import connect
from masar.cli.output import Output
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

SECTORS = ("shelter", "legal", "employment", "health", "psychosocial")
PAGE_SIZE = 100


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    providers = sub.add_parser(
        "providers",
        help="the eligible providers of a region (ids for `case reassign --provider`)",
        parents=[common],
    )
    providers.add_argument("--sector", required=True, choices=SECTORS)
    providers.add_argument("--region", required=True, choices=list(c.REGIONS), metavar="REGION")
    providers.set_defaults(handler=list_providers)


@dataclass(frozen=True, kw_only=True)
class Provider:
    provider_id: str
    sector: str
    name: str
    region: str
    kind: str
    languages: list[str]
    # Beds or seats: None where the sector counts none (legal aid).
    capacity: int | None = None
    free: int | None = None
    open_referrals: int | None = None
    details: list[str] = field(default_factory=list)


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def shelter_provider(shelter: shelter_pb2.Shelter) -> Provider:
    details = ["children" if shelter.accepts_children else "no children"]
    details += [
        _enum_name(shelter_pb2.AccessibilityFeature, a, "ACCESSIBILITY_FEATURE_")
        for a in shelter.accessibility
    ]
    return Provider(
        provider_id=shelter.shelter_id,
        sector="shelter",
        name=shelter.name,
        region=shelter.region,
        kind="shelter",
        languages=[],
        capacity=shelter.capacity,
        free=shelter.free_beds,
        details=details,
    )


def legal_provider(provider: legal_pb2.LegalProvider) -> Provider:
    return Provider(
        provider_id=provider.provider_id,
        sector="legal",
        name=provider.name,
        region=provider.region,
        kind=_enum_name(legal_pb2.LegalProviderKind, provider.kind, "LEGAL_PROVIDER_KIND_"),
        languages=list(provider.languages),
        open_referrals=provider.open_referrals,
        details=[_enum_name(legal_pb2.LegalMatter, m, "LEGAL_MATTER_") for m in provider.matters],
    )


def programme_provider(programme: employment_pb2.Programme) -> Provider:
    return Provider(
        provider_id=programme.programme_id,
        sector="employment",
        name=programme.name,
        region=programme.region,
        kind=_enum_name(employment_pb2.ProgrammeKind, programme.kind, "PROGRAMME_KIND_"),
        languages=list(programme.languages),
        capacity=programme.seats,
        free=programme.seats_free,
        details=[f"starts {programme.start_date.ToDatetime().date().isoformat()}"]
        if programme.HasField("start_date")
        else [],
    )


def care_unit_provider(unit: health_pb2.CareUnit) -> Provider:
    return Provider(
        provider_id=unit.care_unit_id,
        sector="health",
        name=unit.name,
        region=unit.region,
        kind="care_unit",
        languages=list(unit.languages),
        details=[_enum_name(health_pb2.CareService, s, "CARE_SERVICE_") for s in unit.services],
    )


def support_provider(provider: psychosocial_pb2.SupportProvider) -> Provider:
    return Provider(
        provider_id=provider.provider_id,
        sector="psychosocial",
        name=provider.name,
        region=provider.region,
        kind="support",
        languages=list(provider.languages),
        details=[
            _enum_name(psychosocial_pb2.SupportKind, k, "SUPPORT_KIND_") for k in provider.kinds
        ],
    )


async def fetch_providers(sector: str, region: str) -> list[Provider]:
    """Every provider of `sector` in `region`, full ones included."""
    coordinator = connect.Identity(Role.COORDINATOR, region=region)
    if sector == "health":
        async with connect.channel("health", coordinator) as chan:
            units = health_pb2_grpc.HealthServiceStub(chan)
            unit_reply = await connect.rpc(
                "health",
                lambda: units.ListCareUnits(health_pb2.ListCareUnitsRequest(region=region)),
            )
        return [care_unit_provider(u) for u in unit_reply.care_units]
    if sector == "psychosocial":
        async with connect.channel("psychosocial", coordinator) as chan:
            support = psychosocial_pb2_grpc.PsychosocialServiceStub(chan)
            support_reply = await connect.rpc(
                "psychosocial",
                lambda: support.ListSupportProviders(
                    psychosocial_pb2.ListSupportProvidersRequest(region=region)
                ),
            )
        return [support_provider(p) for p in support_reply.providers]
    if sector == "shelter":
        async with connect.channel("shelter", coordinator) as chan:
            shelters = shelter_pb2_grpc.ShelterServiceStub(chan)
            shelter_reply = await connect.rpc(
                "shelter",
                lambda: shelters.ListShelters(shelter_pb2.ListSheltersRequest(region=region)),
            )
        return [shelter_provider(s) for s in shelter_reply.shelters]
    if sector == "employment":
        async with connect.channel("employment", coordinator) as chan:
            programmes = employment_pb2_grpc.EmploymentServiceStub(chan)
            programme_reply = await connect.rpc(
                "employment",
                lambda: programmes.ListProgrammes(
                    employment_pb2.ListProgrammesRequest(region=region)
                ),
            )
        return [programme_provider(p) for p in programme_reply.programmes]
    found: list[Provider] = []
    async with connect.channel("legal", coordinator) as chan:
        legal = legal_pb2_grpc.LegalAidServiceStub(chan)
        request = legal_pb2.ListLegalProvidersRequest(region=region, page_size=PAGE_SIZE)
        while True:
            page = await connect.rpc("legal", lambda: legal.ListProviders(request))
            found += [legal_provider(p) for p in page.providers]
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token


def eligible(provider: Provider) -> bool:
    """Can take a referral now: a free bed or seat where the sector counts them."""
    return provider.free is None or provider.free > 0


async def list_providers(args: argparse.Namespace, out: Output) -> int:
    every = await fetch_providers(args.sector, args.region)
    rows = [p for p in every if eligible(p)]
    if out.json_mode:
        out.document(rows)
        return 0
    if not rows:
        out.line(f"no {args.sector} provider in {args.region} can take a referral now")
    else:
        out.table(
            ["provider", "kind", "free", "open", "languages", "name", "notes"],
            [
                [
                    p.provider_id,
                    p.kind,
                    f"{p.free}/{p.capacity}" if p.free is not None else "-",
                    p.open_referrals if p.open_referrals is not None else "-",
                    ",".join(p.languages) or "-",
                    p.name,
                    ", ".join(p.details) or "-",
                ]
                for p in rows
            ],
        )
    full = len(every) - len(rows)
    if full:
        out.line(f"({full} more in {args.region} with no free place)")
    return 0
