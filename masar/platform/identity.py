"""Identity and roles: signed bearer tokens and the gRPC interceptors that
carry and check them.

A token is a compact JWS (a JWT, `alg: EdDSA`) signed by the issuer's Ed25519
private key, which only the network service (the identity provider) holds;
every other process holds only public keys. Claims: `sub` (an opaque user or
service id, never a name or an e-mail), `role`, `org` (a shelter, provider,
programme or association id), `region` (a region slug), `aud` (the services
the token is for: those its role needs, `ROLE_AUDIENCES`), `iat`, `exp` (at
most 12 hours later), `jti` (the token's id, by which it is revoked).

Verification refuses a token that is malformed, forged, expired, issued for
more than 12 hours, not for the verifying service (`aud`), or without the
scope its role needs (`ORG_REQUIRED_ROLES` name an organisation, a
coordinator a region); the server's interceptor (masar.platform.access) also
refuses revoked ones (masar.platform.revocation).

Keys (masar.platform.settings.KeySettings), first found wins:
- MASAR_TOKEN_SIGNING_KEY: base64 of the issuer's 32-byte Ed25519 private key
  (the network service; tests and benchmarks that run everything in one
  process with one key);
- MASAR_TOKEN_PUBLIC_KEY: base64 of one or more 32-byte public keys, comma
  separated (the first verifies new tokens; keep the old one while its tokens
  live, so the issuer key rotates);
- the local stack: $MASAR_DATA_DIR/keys/network/token-issuer.json (the
  network service's, created 0600 by `masar up`) and its public half,
  $MASAR_DATA_DIR/keys/public/token-issuer.json, which everyone else reads.

Servers deny by default: `AuthInterceptor` verifies the token of every call
except health and reflection, checks the method's allowed roles in an
`AccessPolicy` (declared with `@requires(...)` on servicer methods or given as
a table), and exposes the caller to handlers through `current_caller()`.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from masar.contract import REGIONS, ServiceName
from masar.platform import keyfiles
from masar.platform.errors import PermissionDenied, Unauthenticated
from masar.platform.settings import (
    TOKEN_ISSUER_HOLDER,
    Env,
    KeySettings,
    SettingsError,
    process_environ,
)

log = logging.getLogger(__name__)

ISSUER = "masar"
METADATA_KEY = "authorization"
MAX_TOKEN_CHARS = 4096
CLOCK_LEEWAY = timedelta(seconds=30)
DEFAULT_TTL = timedelta(hours=8)
# No token lives longer: a person renews hers through the network service.
MAX_TTL = timedelta(hours=12)
# A service identity's tokens.
SERVICE_TOKEN_TTL = timedelta(hours=1)
ISSUER_FILE = "token-issuer.json"
ISSUER_KIND = "token-issuer"
TOKEN_TYPE = "JWT"

# An id, never free text: no spaces, no '@' (so never an e-mail address).
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,127}")


class Role(StrEnum):
    INTAKE_OFFICER = "intake_officer"
    SHELTER_STAFF = "shelter_staff"
    LEGAL_AID = "legal_aid"
    EMPLOYMENT_OFFICER = "employment_officer"
    COORDINATOR = "coordinator"
    OPERATOR = "operator"
    # Staff roles of the referral network (services/network).
    SUPERVISOR = "supervisor"
    CARE_UNIT_OFFICER = "care_unit_officer"
    HEALTH_STAFF = "health_staff"
    PSYCHOSOCIAL_STAFF = "psychosocial_staff"
    NETWORK_ADMIN = "network_admin"
    # Service identities: a sector's activities call its own API as these.
    SERVICE_INTAKE = "service:intake"
    SERVICE_SHELTER = "service:shelter"
    SERVICE_LEGAL = "service:legal"
    SERVICE_EMPLOYMENT = "service:employment"
    SERVICE_HEALTH = "service:health"
    SERVICE_PSYCHOSOCIAL = "service:psychosocial"

    @property
    def is_service(self) -> bool:
        return self.value.startswith("service:")


HUMAN_ROLES = frozenset(r for r in Role if not r.is_service)
SERVICE_ROLES = frozenset(r for r in Role if r.is_service)
# Sector staff: the issuer refuses to make their token without an organisation.
ORG_SCOPED_ROLES = frozenset({Role.SHELTER_STAFF, Role.LEGAL_AID, Role.EMPLOYMENT_OFFICER})
# Every role acting for one organisation: a token without `org` is refused
# when it is verified (and the network service issues none).
ORG_REQUIRED_ROLES = ORG_SCOPED_ROLES | frozenset(
    {
        Role.INTAKE_OFFICER,
        Role.SUPERVISOR,
        Role.CARE_UNIT_OFFICER,
        Role.HEALTH_STAFF,
        Role.PSYCHOSOCIAL_STAFF,
    }
)
# Roles acting for one region: a token without `region` is refused.
REGION_REQUIRED_ROLES = frozenset({Role.COORDINATOR})

# The audiences: every service that verifies tokens (the journey API is
# intake's; the codec server is "codec").
AUDIENCES = (
    "intake",
    "shelter",
    "legal",
    "employment",
    "network",
    "codec",
    "health",
    "psychosocial",
)
_SECTORS = ("shelter", "legal", "employment", "health", "psychosocial")
# What each role's token is for: every service whose API the role may call
# (one token per person's session serves them all); checked against the
# servicers' `requires` declarations by tests/masar/platform/test_token_rules.py.
ROLE_AUDIENCES: Mapping[Role, frozenset[str]] = {
    Role.INTAKE_OFFICER: frozenset({"network", "intake", *_SECTORS}),
    Role.SUPERVISOR: frozenset({"network", "intake"}),
    Role.CARE_UNIT_OFFICER: frozenset({"network", "intake"}),
    Role.COORDINATOR: frozenset({"network", "intake", *_SECTORS, "codec"}),
    Role.SHELTER_STAFF: frozenset({"network", "shelter"}),
    Role.LEGAL_AID: frozenset({"network", "legal"}),
    Role.EMPLOYMENT_OFFICER: frozenset({"network", "employment"}),
    Role.HEALTH_STAFF: frozenset({"network", "health"}),
    Role.PSYCHOSOCIAL_STAFF: frozenset({"network", "psychosocial"}),
    Role.NETWORK_ADMIN: frozenset({"network"}),
    Role.OPERATOR: frozenset({"network"}),
    # A service calls its own API, intake (consent proofs, its own for
    # intake) and the network (anchors, revocations).
    Role.SERVICE_INTAKE: frozenset({"intake", "network"}),
    Role.SERVICE_SHELTER: frozenset({"shelter", "intake", "network"}),
    Role.SERVICE_LEGAL: frozenset({"legal", "intake", "network"}),
    Role.SERVICE_EMPLOYMENT: frozenset({"employment", "intake", "network"}),
    Role.SERVICE_HEALTH: frozenset({"health", "intake", "network"}),
    Role.SERVICE_PSYCHOSOCIAL: frozenset({"psychosocial", "intake", "network"}),
}
# In a policy: any valid token, whatever its role.
ANY_AUTHENTICATED = "*"
# In a policy: no token at all (signing in is how a person gets one); the
# method authenticates its caller itself.
NO_TOKEN = "-"


def service_role(name: ServiceName) -> Role:
    return Role(f"service:{name}")


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who is calling, as the verified token says."""

    subject: str
    role: Role
    org: str = ""  # "" when the role belongs to no organisation
    region: str = ""  # "" when the role has no region
    issued_at: datetime
    expires_at: datetime
    token_id: str = ""
    # The services the token is for (`aud`).
    audiences: frozenset[str] = frozenset()

    @property
    def is_service(self) -> bool:
        return self.role.is_service


def scope_problem(role: Role, org: str, region: str) -> str | None:
    """What a token of `role` lacks to be acceptable (None: nothing)."""
    if role in ORG_REQUIRED_ROLES and not org:
        return f"a {role.value} token must name an organisation"
    if role in REGION_REQUIRED_ROLES and not region:
        return f"a {role.value} token must name a region"
    return None


# --- durations -----------------------------------------------------------------

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '8h', '7d' (the same shape as the SLA policy file)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError("a duration looks like 90s, 15m, 8h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


# --- token encoding --------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key, named in each token's header."""
    return hashlib.sha256(keyfiles.public_bytes(key)).hexdigest()[:16]


def _b64_key(value: str, *, source: str) -> bytes:
    return keyfiles.raw_key(value, source=source)


def _check_id(name: str, value: str, *, required: bool) -> None:
    if not value:
        if required:
            raise ValueError(f"{name} is required")
        return
    if not _ID_PATTERN.fullmatch(value):
        raise ValueError(f"{name} must be an id (letters, digits, ':._-'; at most 128)")


class TokenIssuer:
    """Signs tokens. Only the issuing processes hold it."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    @classmethod
    def generate(cls) -> TokenIssuer:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def public_key_b64(self) -> str:
        return keyfiles.public_b64(self.public_key)

    def private_key_b64(self) -> str:
        return base64.b64encode(self._key.private_bytes_raw()).decode()

    def verifier(self) -> TokenVerifier:
        return TokenVerifier([self.public_key])

    def issue(
        self,
        *,
        role: Role | str,
        subject: str | None = None,
        org: str = "",
        region: str = "",
        ttl: timedelta = DEFAULT_TTL,
        now: datetime | None = None,
        audiences: Iterable[str] | None = None,
        token_id: str | None = None,
    ) -> str:
        """A signed token for `audiences` (default: every service the role
        needs); ValueError names the claim that is not acceptable."""
        role = check_claims(role=role, org=org, region=region, ttl=ttl)
        if subject is None:
            subject = role.value if role.is_service else f"user-{secrets.token_hex(6)}"
        _check_id("subject", subject, required=True)
        aud = sorted(set(ROLE_AUDIENCES[role] if audiences is None else audiences))
        if not aud or any(a not in AUDIENCES for a in aud):
            raise ValueError(f"audiences must be some of {', '.join(AUDIENCES)}")
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        header = {"alg": "EdDSA", "typ": TOKEN_TYPE, "kid": self.key_id}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "role": role.value,
            "org": org,
            "region": region,
            "aud": aud,
            "iat": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
            "jti": token_id or secrets.token_hex(8),
        }
        return self._sign(header, claims)

    def _sign(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._key.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{_b64url(signature)}"

    def sign_document(
        self,
        typ: str,
        claims: Mapping[str, Any],
        *,
        ttl: timedelta,
        now: datetime | None = None,
    ) -> str:
        """A signed statement that is not a bearer token: its header names
        `typ` (never "JWT"), so `TokenVerifier.verify` refuses it as a token
        and `verify_document(..., typ)` accepts nothing else. `iss`, `iat`,
        `exp` and `jti` are added to `claims` (ids and codes only)."""
        if typ == TOKEN_TYPE or not _ID_PATTERN.fullmatch(typ):
            raise ValueError("a document type is an id other than JWT")
        _check_ttl(ttl)
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        header = {"alg": "EdDSA", "typ": typ, "kid": self.key_id}
        body = {
            **claims,
            "iss": ISSUER,
            "iat": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
            "jti": secrets.token_hex(8),
        }
        return self._sign(header, body)

    # --- sources ---------------------------------------------------------------

    @classmethod
    def from_b64(cls, value: str, *, source: str = "MASAR_TOKEN_SIGNING_KEY") -> TokenIssuer:
        return cls(keyfiles.private_from_b64(value, source=source))

    @classmethod
    def from_keys(cls, keys: KeySettings) -> TokenIssuer:
        """The issuer's key, if these settings hold it: MASAR_TOKEN_SIGNING_KEY,
        else the network service's key file on the local stack (created, its
        public half published, on first use). Any other process: SettingsError."""
        if keys.token_signing_key:
            return cls.from_b64(keys.token_signing_key)
        if keys.token_public_keys:
            # A configured deployment: a fresh local issuer would sign tokens
            # that no service accepts.
            raise SettingsError(
                "MASAR_TOKEN_SIGNING_KEY is required to issue tokens "
                "when MASAR_TOKEN_PUBLIC_KEY is set"
            )
        path = keys.token_issuer_path
        if path is None:
            raise SettingsError(
                f"the {keys.holder} process holds no token-signing key: "
                f"only the {TOKEN_ISSUER_HOLDER} service issues tokens"
            )
        return cls(keyfiles.ensure_key_pair(path, keys.token_public_path, ISSUER_KIND))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenIssuer:
        """The issuer of the network service's settings read from `environ`
        (MASAR_TOKEN_SIGNING_KEY, else the local stack's network key file)."""
        env = process_environ() if environ is None else environ
        return cls.from_keys(_keys(TOKEN_ISSUER_HOLDER, env))


def _keys(holder: str, env: Mapping[str, str]) -> KeySettings:
    return KeySettings.from_env(holder, Env(env), _data_dir(env))


def check_claims(
    *,
    role: Role | str,
    org: str = "",
    region: str = "",
    ttl: timedelta = DEFAULT_TTL,
    scoped: bool = False,
) -> Role:
    """The role, if a token with these claims may be issued (ValueError
    names what is not acceptable); `scoped`: with the scope verification
    requires of every role (ORG_REQUIRED_ROLES, REGION_REQUIRED_ROLES)."""
    try:
        role = Role(role)
    except ValueError:
        raise ValueError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    _check_id("org", org, required=role in (ORG_REQUIRED_ROLES if scoped else ORG_SCOPED_ROLES))
    if region and region not in REGIONS:
        raise ValueError("region must be one of the twelve region slugs")
    if role is Role.COORDINATOR and not region:
        raise ValueError("region is required for a coordinator")
    _check_ttl(ttl)
    return role


def check_subject(subject: str) -> None:
    """A token's subject is an opaque id (never a name or an e-mail)."""
    _check_id("subject", subject, required=True)


def _check_ttl(ttl: timedelta) -> None:
    if not timedelta(0) < ttl <= MAX_TTL:
        hours = int(MAX_TTL.total_seconds() // 3600)
        raise ValueError(f"ttl must be positive and at most {hours} hours")


def _data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("MASAR_DATA_DIR", "./var").strip() or "./var").expanduser()


class TokenVerifier:
    """Checks tokens against the issuer's public keys."""

    def __init__(self, public_keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in public_keys}
        if not self._keys:
            raise SettingsError("token verification needs at least one public key")

    @classmethod
    def from_keys(cls, keys: KeySettings) -> TokenVerifier:
        """The issuer's public keys: MASAR_TOKEN_PUBLIC_KEY, plus the public
        half of MASAR_TOKEN_SIGNING_KEY when the process holds it; else the
        local stack's public key file (for the network service itself, its
        key file, created on first use). A verifier never creates a key."""
        keys_found: list[Ed25519PublicKey] = []
        if keys.token_public_keys:
            keys_found += keyfiles.public_list(
                keys.token_public_keys, source="MASAR_TOKEN_PUBLIC_KEY"
            )
        if keys.token_signing_key:
            keys_found.append(TokenIssuer.from_b64(keys.token_signing_key).public_key)
        if not keys_found:
            if keys.token_issuer_path is not None:
                keys_found.append(TokenIssuer.from_keys(keys).public_key)
            elif not keys.token_public_path.exists():
                raise SettingsError(
                    "no token public key: set MASAR_TOKEN_PUBLIC_KEY, or run in the "
                    "data dir of a `masar up` (keys/public/token-issuer.json)"
                )
            else:
                keys_found += keyfiles.read_public(keys.token_public_path, ISSUER_KIND)
        return cls(keys_found)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, holder: str = "verifier"
    ) -> TokenVerifier:
        """The verifier of `holder`'s settings read from `environ` (by
        default a process that holds no key of its own)."""
        env = process_environ() if environ is None else environ
        return cls.from_keys(_keys(holder, env))

    def _signed_claims(self, token: str, typ: str) -> Any:
        """The claims of a well-formed token of type `typ` signed by one of
        our keys (not yet checked for expiry); `Unauthenticated` otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise Unauthenticated("malformed token")
        header_b64, claims_b64, signature_b64 = token.split(".")
        try:
            header = json.loads(_b64url_decode(header_b64))
            signature = _b64url_decode(signature_b64)
        except ValueError:
            raise Unauthenticated("malformed token") from None
        if not isinstance(header, dict) or header.get("alg") != "EdDSA":
            raise Unauthenticated("malformed token: unsupported algorithm")
        # A signed document of another type (a consent proof) is never a token.
        if header.get("typ", TOKEN_TYPE) != typ:
            raise Unauthenticated("malformed token: wrong type")
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise Unauthenticated("token signed by an unknown key")
        try:
            key.verify(signature, f"{header_b64}.{claims_b64}".encode("ascii"))
        except InvalidSignature:
            raise Unauthenticated("token signature is invalid") from None
        try:
            return json.loads(_b64url_decode(claims_b64))
        except ValueError:
            raise Unauthenticated("malformed token claims") from None

    def verify_document(
        self, document: str, typ: str, *, now: datetime | None = None
    ) -> dict[str, Any]:
        """The claims of a document signed with `TokenIssuer.sign_document(typ,
        ...)`: `Unauthenticated` if it is malformed, forged, of another type
        or expired."""
        claims = self._signed_claims(document, typ)
        try:
            if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
                raise ValueError("iss")
            issued = _claim_int(claims, "iat")
            expires = _claim_int(claims, "exp")
        except ValueError:
            raise Unauthenticated("malformed token claims") from None
        moment = (now or datetime.now(UTC)).timestamp()
        if expires <= moment:
            raise Unauthenticated("token expired")
        if issued > moment + CLOCK_LEEWAY.total_seconds():
            raise Unauthenticated("token issued in the future")
        return claims

    def verify(
        self, token: str, *, now: datetime | None = None, audience: str | None = None
    ) -> Caller:
        """The caller a token names; `Unauthenticated` if it is malformed,
        forged, expired, issued for more than MAX_TTL, or lacks the scope its
        role needs; `PermissionDenied` if (given `audience`, the verifying
        service) it is not for it. Messages never repeat the token."""
        claims = self._signed_claims(token, TOKEN_TYPE)
        try:
            caller = Caller(
                subject=_claim_str(claims, "sub"),
                role=Role(_claim_str(claims, "role")),
                org=_claim_str(claims, "org", required=False),
                region=_claim_str(claims, "region", required=False),
                issued_at=datetime.fromtimestamp(_claim_int(claims, "iat"), UTC),
                expires_at=datetime.fromtimestamp(_claim_int(claims, "exp"), UTC),
                token_id=_claim_str(claims, "jti"),
                audiences=_claim_audiences(claims),
            )
            if claims.get("iss") != ISSUER:
                raise ValueError("iss")
        except (ValueError, TypeError, AttributeError, OverflowError, OSError):
            raise Unauthenticated("malformed token claims") from None
        moment = now or datetime.now(UTC)
        if caller.expires_at <= moment:
            raise Unauthenticated("token expired")
        if caller.issued_at > moment + CLOCK_LEEWAY:
            raise Unauthenticated("token issued in the future")
        if caller.expires_at - caller.issued_at > MAX_TTL:
            raise Unauthenticated("token lives longer than a token may")
        problem = scope_problem(caller.role, caller.org, caller.region)
        if problem is not None:
            raise Unauthenticated(f"token without its scope: {problem}")
        if audience is not None and audience not in caller.audiences:
            # Authentic, but not for this service: like a role it may not use here.
            raise PermissionDenied(f"the token is not for the {audience} service")
        return caller


def _claim_str(claims: Any, name: str, *, required: bool = True) -> str:
    value = claims.get(name, None if required else "")
    if not isinstance(value, str) or (required and not value):
        raise ValueError(name)
    return value


def _claim_audiences(claims: Any) -> frozenset[str]:
    """`aud`: one audience or a non-empty list of them."""
    value = claims.get("aud")
    found = [value] if isinstance(value, str) else value
    if not isinstance(found, list) or not found or not all(isinstance(a, str) and a for a in found):
        raise ValueError("aud")
    return frozenset(found)


def _claim_int(claims: Any, name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(name)
    return value


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of an `authorization: Bearer ...` metadata entry."""
    for key, value in metadata or ():
        if key.lower() != METADATA_KEY:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


# --- the caller of the current RPC ----------------------------------------------------

_current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "masar_current_caller", default=None
)


def current_caller() -> Caller:
    """The verified caller of the RPC being handled (also inside
    `Database.run`, which carries context variables to its thread)."""
    caller = _current_caller.get()
    if caller is None:
        raise Unauthenticated("no authenticated caller")
    return caller


def caller_or_none() -> Caller | None:
    return _current_caller.get()


@dataclass(frozen=True)
class SystemActor:
    """The audit actor of a change made outside any authenticated RPC
    (a server run without authentication, tests, tools)."""

    subject: str = "system"
    role: str = "system"
    org: str = ""


# The one actor placeholder: `caller_or_none() or SYSTEM_ACTOR`.
SYSTEM_ACTOR = SystemActor()


@contextmanager
def acting_as(caller: Caller) -> Iterator[Caller]:
    """Run a block as `caller` (tests, and code that acts outside an RPC)."""
    token = _current_caller.set(caller)
    try:
        yield caller
    finally:
        _current_caller.reset(token)


# --- access policy ----------------------------------------------------------------
