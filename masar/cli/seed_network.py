"""The sample referral network `masar seed` creates through the network
service: in each region of the sample data, associations, a multifunctional
centre, a shelter operator, legal aid and training organisations, and the
hospital, court, police (DGSN) and gendarmerie care units — the
organisations that run the sample shelters, legal aid providers and
programmes; and one account per role (a coordinator per region, and a
second intake officer, at the multifunctional centre of Fès, to transfer a
case to), each with its first password — and, for the roles that sign in
with a second factor, its authenticator enrolment URI — so a newcomer can
sign in at once.

Every create carries a fixed idempotency key: a second run creates nothing
and lists the same accounts, without their passwords (the service hands a
password out once; `masar account reset-password` makes a new one).

The seed bootstraps the network, so it acts through the local stack's own
key (the development shortcut), whoever is signed in: a network
administrator creates the organisations and the accounts she manages, each
region's coordinator the other accounts of her region. Names are
illustrative; contact details use the reserved example.org domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from masar.cli import connect
from masar.platform.identity import Role
from masar.v1 import network_pb2 as pb
from masar.v1 import network_pb2_grpc

AR, AMZ, FR, EN, ES = (
    pb.SPOKEN_LANGUAGE_ARABIC,
    pb.SPOKEN_LANGUAGE_AMAZIGH,
    pb.SPOKEN_LANGUAGE_FRENCH,
    pb.SPOKEN_LANGUAGE_ENGLISH,
    pb.SPOKEN_LANGUAGE_SPANISH,
)
CASE, SHELTER, LEGAL, EMPLOYMENT, HEALTH, PSY = (
    pb.SERVED_SECTOR_CASE_MANAGEMENT,
    pb.SERVED_SECTOR_SHELTER,
    pb.SERVED_SECTOR_LEGAL,
    pb.SERVED_SECTOR_EMPLOYMENT,
    pb.SERVED_SECTOR_HEALTH,
    pb.SERVED_SECTOR_PSYCHOSOCIAL,
)
K = pb.OrganisationKind

# region -> its main city, in the organisations' names
NETWORK_REGIONS = {
    "fes-meknes": "Fès",
    "casablanca-settat": "Casablanca",
    "rabat-sale-kenitra": "Rabat",
    "marrakech-safi": "Marrakech",
    "oriental": "Oujda",
}


@dataclass(frozen=True)
class OrgSeed:
    slug: str  # the seed's own name for it (idempotency keys, accounts)
    name: str
    kind: Any
    languages: tuple[Any, ...]
    sectors: tuple[Any, ...]


def region_organisations(city: str) -> list[OrgSeed]:
    return [
        OrgSeed(
            "association",
            f"Association Amal — écoute et orientation ({city})",
            K.ORGANISATION_KIND_ASSOCIATION,
            (AR, AMZ, FR),
            (CASE, PSY),
        ),
        OrgSeed(
            "association-2",
            f"Association Annajda — droits des femmes ({city})",
            K.ORGANISATION_KIND_ASSOCIATION,
            (AR, FR, EN),
            (CASE, LEGAL),
        ),
        OrgSeed(
            "centre",
            f"Centre multifonctionnel pour les femmes ({city})",
            K.ORGANISATION_KIND_MULTIFUNCTIONAL_CENTRE,
            (AR, AMZ, FR),
            (CASE, SHELTER, PSY, EMPLOYMENT),
        ),
        OrgSeed(
            "shelter",
            f"Dar Al Amane — hébergement ({city})",
            K.ORGANISATION_KIND_SHELTER_OPERATOR,
            (AR, FR),
            (SHELTER,),
        ),
        OrgSeed(
            "legal",
            f"Association d'aide juridique ({city})",
            K.ORGANISATION_KIND_LEGAL_AID_PROVIDER,
            (AR, AMZ, FR),
            (LEGAL,),
        ),
        OrgSeed(
            "training",
            f"Centre de formation et d'insertion ({city})",
            K.ORGANISATION_KIND_TRAINING_CENTRE,
            (AR, FR),
            (EMPLOYMENT,),
        ),
        OrgSeed(
            "hospital",
            f"Unité de prise en charge — CHU ({city})",
            K.ORGANISATION_KIND_HOSPITAL_CARE_UNIT,
            (AR, FR, ES),
            (HEALTH, CASE),
        ),
        OrgSeed(
            "court",
            f"Cellule de prise en charge — tribunal de première instance ({city})",
            K.ORGANISATION_KIND_COURT_CARE_UNIT,
            (AR, FR),
            (LEGAL, CASE),
        ),
        OrgSeed(
            "police",
            f"Cellule de prise en charge — Sûreté nationale ({city})",
            K.ORGANISATION_KIND_POLICE_CARE_UNIT,
            (AR, FR),
            (CASE,),
        ),
        OrgSeed(
            "gendarmerie",
            f"Cellule de prise en charge — Gendarmerie royale ({city})",
            K.ORGANISATION_KIND_GENDARMERIE_CARE_UNIT,
            (AR, AMZ),
            (CASE,),
        ),
    ]


@dataclass(frozen=True)
class AccountSeed:
    username: str
    display_name: str
    role: Any
    region: str
    org: str  # an OrgSeed slug of that region
    language: Any = pb.PREFERRED_LANGUAGE_FR


FES = "fes-meknes"
ACCOUNTS: list[AccountSeed] = [
    AccountSeed("admin.network", "Samira Alaoui", pb.ACCOUNT_ROLE_NETWORK_ADMIN, FES, "centre"),
    AccountSeed(
        "operator.network",
        "Youssef Berrada",
        pb.ACCOUNT_ROLE_OPERATOR,
        FES,
        "centre",
        pb.PREFERRED_LANGUAGE_EN,
    ),
    AccountSeed("coord.fes-meknes", "Nadia El Idrissi", pb.ACCOUNT_ROLE_COORDINATOR, FES, "centre"),
    AccountSeed(
        "coord.casablanca-settat",
        "Hanane Tazi",
        pb.ACCOUNT_ROLE_COORDINATOR,
        "casablanca-settat",
        "centre",
    ),
    AccountSeed(
        "coord.rabat-sale-kenitra",
        "Ghizlane Sefrioui",
        pb.ACCOUNT_ROLE_COORDINATOR,
        "rabat-sale-kenitra",
        "centre",
    ),
    AccountSeed(
        "coord.oriental", "Karima Ziani", pb.ACCOUNT_ROLE_COORDINATOR, "oriental", "centre"
    ),
    AccountSeed(
        "coord.marrakech-safi",
        "Fatima Zahra Ouali",
        pb.ACCOUNT_ROLE_COORDINATOR,
        "marrakech-safi",
        "centre",
        pb.PREFERRED_LANGUAGE_AR,
    ),
    AccountSeed("supervisor.fes", "Latifa Bennani", pb.ACCOUNT_ROLE_SUPERVISOR, FES, "association"),
    AccountSeed(
        "intake.fes",
        "Khadija Amrani",
        pb.ACCOUNT_ROLE_INTAKE_OFFICER,
        FES,
        "association",
        pb.PREFERRED_LANGUAGE_AR,
    ),
    # The multifunctional centre's officer: where a case held by the
    # association may be transferred (README, "Transferring a case").
    AccountSeed(
        "intake.centre-fes", "Rachida Ouazzani", pb.ACCOUNT_ROLE_INTAKE_OFFICER, FES, "centre"
    ),
    AccountSeed("careunit.fes", "Meryem Chraibi", pb.ACCOUNT_ROLE_CARE_UNIT_OFFICER, FES, "police"),
    AccountSeed("shelter.fes", "Zineb Lahlou", pb.ACCOUNT_ROLE_SHELTER_STAFF, FES, "shelter"),
    AccountSeed("legal.fes", "Maître Salma Kettani", pb.ACCOUNT_ROLE_LEGAL_AID, FES, "legal"),
    AccountSeed(
        "employment.fes", "Imane Skalli", pb.ACCOUNT_ROLE_EMPLOYMENT_OFFICER, FES, "training"
    ),
    AccountSeed("health.fes", "Dr Asmae Filali", pb.ACCOUNT_ROLE_HEALTH_STAFF, FES, "hospital"),
    AccountSeed(
        "psychosocial.fes",
        "Houda Benjelloun",
        pb.ACCOUNT_ROLE_PSYCHOSOCIAL_STAFF,
        FES,
        "association",
    ),
]
ADMIN_MANAGED = frozenset(
    {pb.ACCOUNT_ROLE_COORDINATOR, pb.ACCOUNT_ROLE_NETWORK_ADMIN, pb.ACCOUNT_ROLE_OPERATOR}
)


def _stub(chan: grpc.aio.Channel) -> network_pb2_grpc.NetworkServiceStub:
    return network_pb2_grpc.NetworkServiceStub(chan)


# (region, OrgSeed slug) -> the organisation
Organisations = dict[tuple[str, str], pb.Organisation]


async def seed_organisations() -> Organisations:
    """The sample organisations of every region, as a network administrator."""
    admin = connect.Identity(Role.NETWORK_ADMIN)
    orgs: Organisations = {}
    async with connect.channel("network", admin, source=connect.local_token(admin)) as chan:
        stub = _stub(chan)
        for region, city in NETWORK_REGIONS.items():
            for org in region_organisations(city):
                request = pb.CreateOrganisationRequest(
                    name=org.name,
                    kind=org.kind,
                    region=region,
                    languages=list(org.languages),
                    sectors=list(org.sectors),
                    idempotency_key=f"seed-org-{region}-{org.slug}",
                )
                reply = await connect.rpc("network", _bind(stub.CreateOrganisation, request))
                orgs[(region, org.slug)] = reply.organisation
    return orgs


async def seed_accounts(orgs: Organisations) -> list[dict[str, Any]]:
    """One account per role; what a person needs to sign in, one document each."""
    return [await _seed_account(spec, orgs[(spec.region, spec.org)]) for spec in ACCOUNTS]


async def _seed_account(spec: AccountSeed, org: pb.Organisation) -> dict[str, Any]:
    if spec.role in ADMIN_MANAGED:
        manager = connect.Identity(Role.NETWORK_ADMIN)
    else:
        manager = connect.Identity(Role.COORDINATOR, region=spec.region)
    request = pb.CreateAccountRequest(
        username=spec.username,
        display_name=spec.display_name,
        role=spec.role,
        organisation_id=org.organisation_id,
        email=f"{spec.username}@example.org",
        language=spec.language,
        idempotency_key=f"seed-account-{spec.username}",
    )
    doc: dict[str, Any] = {
        "username": spec.username,
        "role": pb.AccountRole.Name(spec.role).removeprefix("ACCOUNT_ROLE_").lower(),
        "organisation_id": org.organisation_id,
        "organisation": org.name,
        "region": spec.region,
    }
    async with connect.channel("network", manager, source=connect.local_token(manager)) as chan:
        try:
            reply = await _stub(chan).CreateAccount(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise connect.rpc_error("network", exc) from None
            # The username is another account's, not one the seed created.
            return {
                **doc,
                "account_id": None,
                "status": "taken",
                "first_password": None,
                "totp_uri": None,
                "totp_required": None,
            }
    account = reply.account
    created = bool(reply.one_time_password)
    return {
        **doc,
        "account_id": account.account_id,
        "status": "created" if created else "unchanged",
        "first_password": reply.one_time_password or None,
        "totp_uri": reply.totp_uri or None,
        "totp_required": account.totp_required,
    }


def _bind(method: Any, request: Any) -> Any:
    return lambda: method(request)


def accounts_text(accounts: list[dict[str, Any]]) -> list[str]:
    """The accounts for people: one row each, then the enrolment URIs."""
    if not accounts:
        return []
    rows = [("username", "role", "account", "organisation", "region", "first password")]
    for a in accounts:
        if a["status"] == "created":
            password = a["first_password"]
        elif a["status"] == "unchanged":
            password = "unchanged (reset with masar account reset-password ACCOUNT)"
        else:
            password = "username taken by another account"
        rows.append(
            (
                a["username"],
                a["role"],
                a["account_id"] or "-",
                a["organisation_id"] or "-",
                a["region"],
                password,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "accounts (sign in: `masar password change --username USERNAME` the first time, "
        "then `masar login`):"
    ]
    for i, row in enumerate(rows):
        head = "  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True))
        lines.append(f"  {head}  {row[5]}".upper() if i == 0 else f"  {head}  {row[5]}")
    uris = [a for a in accounts if a.get("totp_uri")]
    if uris:
        lines.append("authenticator app enrolment (coordinators, supervisors, administrators):")
        lines += [f"  {a['username']}: {a['totp_uri']}" for a in uris]
    if any(a["status"] == "unchanged" for a in accounts):
        lines.append(
            "passwords and enrolments are shown once, when an account is created "
            "(`masar account reset-password ACCOUNT`, `masar account reset-totp ACCOUNT`)"
        )
    return lines
