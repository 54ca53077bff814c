"""Actor assertions: who sent a journey Update, signed by the service that sent it.

Every journey Update carries an `ActorAssertion` in its `assertion` field:
who acted (an opaque account or service id), in which role, for which
organisation and region, on which case, with which Update, over which payload
(a digest of the Update's canonical JSON without the assertion), when, and a
unique id. The sending service (intake, shelter, legal, employment; later
network, health, psychosocial) signs it with its own Ed25519 *assertion key*
(`masar.platform.assertions`); the journey verifies it in its Update
validators against the issuers' public keys, which reach it through the
recorded policy local activity (`workflows.authentication`).

This module is what both sides must agree on, byte for byte: the canonical
JSON, the payload digest, the bytes that are signed, the lifetime, and which
issuer and role may send which Update. Standard library only (it runs inside
the workflow sandbox).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

# --- lifetimes ----------------------------------------------------------------

# An assertion is good for this long after it was issued (senders sign at
# delivery, so an outbox entry that waited for Temporal is signed afresh).
ASSERTION_TTL_SECONDS = 300
# Clocks differ: an assertion issued up to this far in the journey's future passes.
ASSERTION_CLOCK_SKEW_SECONDS = 60
# The journey remembers this many recently used assertion ids (a replayed one
# is refused); ids older than the lifetime are forgotten (they are expired).
MAX_SEEN_ASSERTIONS = 1000

# The signed bytes start with this, so an assertion signature can never pass
# for any other Ed25519 signature a service makes.
SIGNING_CONTEXT = b"masar.actor-assertion.v1\n"

# --- rejections (ApplicationError types of the journey's Update validators) ----

# No assertion, an unknown key, a bad signature, expired, or already used.
ERR_UNAUTHENTICATED = "UnauthenticatedUpdate"
# A valid assertion that does not cover this Update: another case, another
# Update, another payload, an issuer or role not allowed, another region.
ERR_FORBIDDEN = "ForbiddenUpdate"


# --- the assertion --------------------------------------------------------------


@dataclass
class ActorAssertion:
    """Signed by `issuer`'s key `key_id` over `signing_bytes(self)`."""

    assertion_id: str  # unique (random); the journey refuses one it has seen
    issuer: str  # the sending service: "intake", "shelter", "legal", "employment", ...
    key_id: str  # which of the issuer's assertion keys signed it
    actor_id: str  # the verified account or service id (opaque: never a name)
    role: str  # masar.platform.identity.Role value
    case_id: str
    update_name: str  # the contract's UPDATE_* name
    payload_digest: str  # payload_digest(update), hex
    issued_at: datetime
    organisation_id: str = ""  # the actor's organisation ("" for none)
    region: str = ""  # the actor's region ("" for none)
    # Set when a coordinator acts on another region's case under an emergency
    # grant that the issuer checked.
    grant_id: str = ""
    signature: str = ""  # base64 of the Ed25519 signature


@dataclass
class IssuerKey:
    """One public assertion key of one issuer (base64 of the 32-byte key)."""

    issuer: str
    key_id: str
    public_key: str


# --- canonical JSON ----------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A contract value as JSON types: dataclasses as objects, datetimes in ISO
    8601, enums as their values (as the Temporal JSON converter writes them)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def _pruned(value: Any) -> Any:
    """Nulls left out: a field added later with a None default does not change
    the digest of an Update that does not use it."""
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, nulls left out."""
    return json.dumps(
        _pruned(jsonable(value)),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def payload_digest(update: Any) -> str:
    """SHA-256 (hex) of an Update's canonical JSON without its assertion; the
    Update as a contract dataclass or as the JSON object the outbox keeps."""
    doc = jsonable(update)
    if not isinstance(doc, dict):
        raise TypeError("an Update is a dataclass or a JSON object")
    doc.pop("assertion", None)
    return hashlib.sha256(canonical_json(doc)).hexdigest()


def signing_bytes(assertion: ActorAssertion) -> bytes:
    """What the issuer signs: every field but the signature."""
    doc = jsonable(assertion)
    doc.pop("signature", None)
    return SIGNING_CONTEXT + canonical_json(doc)


# --- who may send what ---------------------------------------------------------------

SECTOR_ISSUERS = frozenset({"shelter", "legal", "employment", "health", "psychosocial"})
COORDINATOR = "coordinator"
SUPERVISOR = "supervisor"
# The staff role of each referral sector (masar.platform.identity.Role values).
SECTOR_STAFF_ROLES: dict[str, str] = {
    "shelter": "shelter_staff",
    "legal": "legal_aid",
    "employment": "employment_officer",
    "health": "health_staff",
    "psychosocial": "psychosocial_staff",
}
# The people intake acts for on a case (the case holder's staff, a coordinator
# through the journey API, the care unit and health staff for medical care).
CASE_ROLES = frozenset(
    {
        "intake_officer",
        SUPERVISOR,
        "care_unit_officer",
        COORDINATOR,
        "health_staff",
        "psychosocial_staff",
    }
)


def service_role(issuer: str) -> str:
    """The issuing service's own identity, for changes made outside any request."""
    return f"service:{issuer}"


@dataclass(frozen=True)
class UpdateAuthority:
    """Who may send one Update: the issuing services, and the roles they may
    assert (`sector` updates: the issuer must be the referral's sector, and
    its role that sector's staff, a coordinator or the sector service). A
    coordinator, whatever the Update, acts on her own region's cases only
    (or under an emergency grant the issuer names in `grant_id`)."""

    issuers: frozenset[str]
    roles: frozenset[str] = frozenset()
    sector: bool = False  # a referral sector's staff decision or milestone


_INTAKE = frozenset({"intake"})
_CASE = UpdateAuthority(_INTAKE, CASE_ROLES | {service_role("intake")})
_COORDINATORS = UpdateAuthority(_INTAKE, frozenset({COORDINATOR}))
_SECTOR = UpdateAuthority(SECTOR_ISSUERS, sector=True)
# Clinical care is recorded by the health service only, for its own referrals.
_HEALTH = UpdateAuthority(frozenset({"health"}), sector=True)

# Update name -> who may send it. An Update not listed here is refused.
UPDATE_AUTHORITY: dict[str, UpdateAuthority] = {
    "referral_decision": _SECTOR,
    "referral_milestone": _SECTOR,
    "clinical_care_recorded": _HEALTH,
    "protection_order_breached": UpdateAuthority(frozenset({"legal"}), sector=True),
    "consent_changed": _CASE,
    "risk_reassessed": _CASE,
    "follow_up_recorded": _CASE,
    "medical_care_confirmed": _CASE,
    "closure_requested": _CASE,
    "reopen": _CASE,
    "transfer_requested": _CASE,
    "transfer_decided": _CASE,
    "reassign_referral": _COORDINATORS,
    "extend_deadline": _COORDINATORS,
    "decide_closure": _COORDINATORS,
    "transfer_redirected": _COORDINATORS,
}


def sector_roles(sector: str) -> frozenset[str]:
    """Who a sector service may assert for its referrals' decisions and milestones."""
    return frozenset({SECTOR_STAFF_ROLES[sector], COORDINATOR, service_role(sector)})
