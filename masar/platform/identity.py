"""Identity and roles: signed bearer tokens and the gRPC interceptors that
carry and check them.

A token is a compact JWS (a JWT, `alg: EdDSA`) signed by the issuer's Ed25519
private key; services hold only public keys. Claims: `sub` (an opaque user or
service id, never a name or an e-mail), `role`, `org` (a shelter, provider,
programme or association id), `region` (a region slug), `iat`, `exp`, `jti`.

Keys, first found wins:
- MASAR_TOKEN_SIGNING_KEY: base64 of the issuer's 32-byte Ed25519 private key
  (the processes that issue tokens: `masar token issue`, services minting their
  own service-identity tokens);
- MASAR_TOKEN_PUBLIC_KEY: base64 of one or more 32-byte public keys, comma
  separated (the first verifies new tokens; keep the old one while its tokens
  live, so the issuer key rotates);
- $MASAR_DATA_DIR/token-issuer.json, created (mode 0600) on first use: the
  local stack's issuer, shared by every process on the machine.

Servers deny by default: `AuthInterceptor` verifies the token of every call
except health and reflection, checks the method's allowed roles in an
`AccessPolicy` (declared with `@requires(...)` on servicer methods or given as
a table), and exposes the caller to handlers through `current_caller()`.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from masar.contract import REGIONS, ServiceName
from masar.platform.errors import MasarError, PermissionDenied, Unauthenticated
from masar.platform.rpc import grpc_status
from masar.platform.settings import SettingsError, process_environ

log = logging.getLogger(__name__)

ISSUER = "masar"
METADATA_KEY = "authorization"
MAX_TOKEN_CHARS = 4096
CLOCK_LEEWAY = timedelta(seconds=30)
DEFAULT_TTL = timedelta(hours=8)
MAX_TTL = timedelta(days=30)
ISSUER_FILE = "token-issuer.json"
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

    @property
    def is_service(self) -> bool:
        return self.value.startswith("service:")


HUMAN_ROLES = frozenset(r for r in Role if not r.is_service)
SERVICE_ROLES = frozenset(r for r in Role if r.is_service)
# Staff of one organisation: their token must name it.
ORG_SCOPED_ROLES = frozenset({Role.SHELTER_STAFF, Role.LEGAL_AID, Role.EMPLOYMENT_OFFICER})
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

    @property
    def is_service(self) -> bool:
        return self.role.is_service


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


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key, named in each token's header."""
    return hashlib.sha256(_public_bytes(key)).hexdigest()[:16]


def _b64_key(value: str, *, source: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{source} is not valid base64") from None
    if len(raw) != 32:
        raise SettingsError(f"{source} must be a 32-byte Ed25519 key")
    return raw


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
        return base64.b64encode(_public_bytes(self.public_key)).decode()

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
    ) -> str:
        """A signed token; ValueError names the claim that is not acceptable."""
        try:
            role = Role(role)
        except ValueError:
            raise ValueError(f"role must be one of {', '.join(r.value for r in Role)}") from None
        if subject is None:
            subject = role.value if role.is_service else f"user-{secrets.token_hex(6)}"
        _check_id("subject", subject, required=True)
        _check_id("org", org, required=role in ORG_SCOPED_ROLES)
        if region and region not in REGIONS:
            raise ValueError("region must be one of the twelve region slugs")
        if role is Role.COORDINATOR and not region:
            raise ValueError("region is required for a coordinator")
        if not timedelta(0) < ttl <= MAX_TTL:
            raise ValueError(f"ttl must be positive and at most {MAX_TTL.days} days")
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        header = {"alg": "EdDSA", "typ": TOKEN_TYPE, "kid": self.key_id}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "role": role.value,
            "org": org,
            "region": region,
            "iat": int(issued.timestamp()),
            "exp": int((issued + ttl).timestamp()),
            "jti": secrets.token_hex(8),
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
        if not timedelta(0) < ttl <= MAX_TTL:
            raise ValueError(f"ttl must be positive and at most {MAX_TTL.days} days")
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
        return cls(Ed25519PrivateKey.from_private_bytes(_b64_key(value, source=source)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenIssuer:
        env = process_environ() if environ is None else environ
        signing = env.get("MASAR_TOKEN_SIGNING_KEY", "").strip()
        if signing:
            return cls.from_b64(signing)
        if env.get("MASAR_TOKEN_PUBLIC_KEY", "").strip():
            # A configured deployment: a fresh local issuer would sign tokens
            # that no service accepts.
            raise SettingsError(
                "MASAR_TOKEN_SIGNING_KEY is required to issue tokens "
                "when MASAR_TOKEN_PUBLIC_KEY is set"
            )
        return cls.load_or_create(_data_dir(env) / ISSUER_FILE)

    @classmethod
    def load_or_create(cls, path: Path) -> TokenIssuer:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            issuer = cls.generate()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process of the stack created it first
            else:
                with os.fdopen(fd, "w") as f:
                    json.dump(
                        {
                            "private_key": issuer.private_key_b64(),
                            "public_key": issuer.public_key_b64(),
                        },
                        f,
                        indent=2,
                    )
        try:
            doc = json.loads(path.read_text())
            return cls.from_b64(doc["private_key"], source=str(path))
        except (KeyError, ValueError, TypeError):
            raise SettingsError(f"{path} is not a valid token issuer file") from None


def _data_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("MASAR_DATA_DIR", "./var").strip() or "./var").expanduser()


class TokenVerifier:
    """Checks tokens against the issuer's public keys."""

    def __init__(self, public_keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in public_keys}
        if not self._keys:
            raise SettingsError("token verification needs at least one public key")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenVerifier:
        env = process_environ() if environ is None else environ
        keys: list[Ed25519PublicKey] = []
        public = env.get("MASAR_TOKEN_PUBLIC_KEY", "").strip()
        for part in filter(None, (p.strip() for p in public.split(","))):
            raw = _b64_key(part, source="MASAR_TOKEN_PUBLIC_KEY")
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        if env.get("MASAR_TOKEN_SIGNING_KEY", "").strip() or not keys:
            keys.append(TokenIssuer.from_env(env).public_key)
        return cls(keys)

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

    def verify(self, token: str, *, now: datetime | None = None) -> Caller:
        """The caller a token names; `Unauthenticated` if it is malformed,
        forged or expired. Messages never repeat the token."""
        claims = self._signed_claims(token, TOKEN_TYPE)
        try:
            caller = Caller(
                subject=_claim_str(claims, "sub"),
                role=Role(_claim_str(claims, "role")),
                org=_claim_str(claims, "org", required=False),
                region=_claim_str(claims, "region", required=False),
                issued_at=datetime.fromtimestamp(_claim_int(claims, "iat"), UTC),
                expires_at=datetime.fromtimestamp(_claim_int(claims, "exp"), UTC),
                token_id=_claim_str(claims, "jti", required=False),
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
        return caller


def _claim_str(claims: Any, name: str, *, required: bool = True) -> str:
    value = claims.get(name, None if required else "")
    if not isinstance(value, str) or (required and not value):
        raise ValueError(name)
    return value


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

# Always open: Kubernetes probes and grpcurl need them without a token.
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_ROLES_ATTRIBUTE = "__masar_roles__"
_METHOD_PATTERN = re.compile(r"/[A-Za-z_][\w.]*/[A-Za-z_]\w*")

F = TypeVar("F", bound=Callable[..., Any])


def _role_set(roles: Iterable[Role | str]) -> frozenset[str]:
    result = set()
    for role in roles:
        if role not in (ANY_AUTHENTICATED, NO_TOKEN):
            Role(role)  # ValueError on a typo, at import time
        result.add(str(role))
    return frozenset(result)


def requires(*roles: Role | str) -> Callable[[F], F]:
    """Declare the roles allowed to call a servicer method (`ANY_AUTHENTICATED`
    for any valid token). Methods without a declaration are denied."""
    allowed = _role_set(roles)
    if not allowed:
        raise ValueError("requires() needs at least one role")
    if NO_TOKEN in allowed and len(allowed) > 1:
        raise ValueError("requires(NO_TOKEN) takes no role")

    def mark(fn: F) -> F:
        setattr(fn, _ROLES_ATTRIBUTE, allowed)
        return fn

    return mark


class AccessPolicy:
    """Roles allowed per full method name ("/masar.v1.ShelterService/Decide")."""

    def __init__(self, rules: Mapping[str, Iterable[Role | str]] | None = None) -> None:
        self._rules: dict[str, frozenset[str]] = {}
        for method, roles in (rules or {}).items():
            self.allow(method, roles)

    def allow(self, method: str, roles: Iterable[Role | str]) -> None:
        if not _METHOD_PATTERN.fullmatch(method):
            raise ValueError("a method is named '/package.Service/Method'")
        self._rules[method] = self._rules.get(method, frozenset()) | _role_set(roles)

    def add_servicer(self, service_name: str, servicer: Any) -> None:
        """Take the `@requires` declarations of a servicer's methods."""
        for attr in dir(type(servicer)):
            roles = getattr(getattr(type(servicer), attr, None), _ROLES_ATTRIBUTE, None)
            if roles:
                self.allow(f"/{service_name}/{attr}", roles)

    @classmethod
    def from_services(
        cls,
        services: Iterable[Any],
        rules: Mapping[str, Iterable[Role | str]] | None = None,
    ) -> AccessPolicy:
        """From `GrpcService`s (their `name` and `servicer`) plus explicit rules."""
        policy = cls(rules)
        for service in services:
            policy.add_servicer(service.name, service.servicer)
        return policy

    def roles_for(self, method: str) -> frozenset[str] | None:
        return self._rules.get(method)

    def needs_no_token(self, method: str) -> bool:
        return self._rules.get(method) == frozenset({NO_TOKEN})

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self._rules)

    def check(self, method: str, caller: Caller) -> None:
        roles = self._rules.get(method)
        if roles is None:
            raise PermissionDenied("method is not open to any role")
        if ANY_AUTHENTICATED not in roles and caller.role.value not in roles:
            raise PermissionDenied(f"role {caller.role.value} may not call this method")


# --- server interceptor -----------------------------------------------------------------


def is_open_method(method: str) -> bool:
    return method.startswith(OPEN_METHOD_PREFIXES)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Deny by default: a valid token of an allowed role, or no call at all.

    Placed before the error-mapping interceptor (`start_server(...,
    interceptors=[AuthInterceptor(...)])`), it answers UNAUTHENTICATED or
    PERMISSION_DENIED itself, with the codes of `masar.platform.errors`.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        policy: AccessPolicy,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._verifier = verifier
        self._policy = policy
        self._clock = clock or (lambda: datetime.now(UTC))

    def authorise(self, method: str, metadata: Iterable[tuple[str, Any]] | None) -> Caller:
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("missing bearer token")
        caller = self._verifier.verify(token, now=self._clock())
        self._policy.check(method, caller)
        return caller

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or is_open_method(method) or self._policy.needs_no_token(method):
            return handler
        try:
            caller = self.authorise(method, handler_call_details.invocation_metadata)
        except MasarError as exc:
            log.warning(
                "rpc refused",
                extra={"rpc": method, "status": exc.code.name, "reason": exc.message},
            )
            return _refusing(handler, exc)
        return _as_caller(handler, caller)


def _rebuild(handler: grpc.RpcMethodHandler, **behaviours: Any) -> grpc.RpcMethodHandler:
    kinds = {
        "unary_unary": grpc.unary_unary_rpc_method_handler,
        "unary_stream": grpc.unary_stream_rpc_method_handler,
        "stream_unary": grpc.stream_unary_rpc_method_handler,
        "stream_stream": grpc.stream_stream_rpc_method_handler,
    }
    for kind, behaviour in behaviours.items():
        if behaviour is not None:
            return kinds[kind](
                behaviour,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def _kind(handler: grpc.RpcMethodHandler) -> str:
    for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
        if getattr(handler, kind) is not None:
            return kind
    raise ValueError("handler has no behaviour")


def _refusing(handler: grpc.RpcMethodHandler, error: MasarError) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc_status(error), error.message)

    async def refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc_status(error), error.message)
        yield  # pragma: no cover - abort raises

    kind = _kind(handler)
    return _rebuild(handler, **{kind: refuse_stream if kind.endswith("_stream") else refuse})


def _as_caller(handler: grpc.RpcMethodHandler, caller: Caller) -> grpc.RpcMethodHandler:
    kind = _kind(handler)
    inner = getattr(handler, kind)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        with acting_as(caller):
            return await inner(request, context)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # Each RPC runs in its own task: setting without resetting is safe.
        _current_caller.set(caller)
        result = inner(request, context)
        if hasattr(result, "__aiter__"):
            async for item in result:
                yield item
        else:
            await result

    return _rebuild(handler, **{kind: streaming if kind.endswith("_stream") else unary})


# --- client side --------------------------------------------------------------------


class TokenSource(Protocol):
    def token(self) -> str: ...


class StaticToken:
    """A token given from outside (MASAR_TOKEN, a test)."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise SettingsError("an empty token was given")
        self._token = token.strip()

    def token(self) -> str:
        return self._token


class MintedToken:
    """A service identity that issues its own short-lived tokens and renews
    them before they expire (the process holds the signing key)."""

    def __init__(
        self,
        issuer: TokenIssuer,
        *,
        role: Role,
        subject: str | None = None,
        org: str = "",
        region: str = "",
        ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self._issuer = issuer
        self._role = role
        self._subject = subject
        self._org = org
        self._region = region
        self._ttl = ttl
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = datetime.min.replace(tzinfo=UTC)

    def token(self) -> str:
        now = datetime.now(UTC)
        with self._lock:
            if now >= self._renew_at:
                self._token = self._issuer.issue(
                    role=self._role,
                    subject=self._subject,
                    org=self._org,
                    region=self._region,
                    ttl=self._ttl,
                    now=now,
                )
                self._renew_at = now + self._ttl * 0.8
            return self._token


def token_from_env(environ: Mapping[str, str] | None = None) -> StaticToken | None:
    """MASAR_TOKEN: the token a CLI or client presents, if one is set."""
    env = process_environ() if environ is None else environ
    value = env.get("MASAR_TOKEN", "").strip()
    return StaticToken(value) if value else None


def service_token_source(
    name: ServiceName, environ: Mapping[str, str] | None = None
) -> TokenSource:
    """The identity a sector's activities present to its own API: the token
    in MASAR_SERVICE_TOKEN if set, else tokens minted with the issuer key."""
    env = process_environ() if environ is None else environ
    given = env.get("MASAR_SERVICE_TOKEN", "").strip()
    if given:
        return StaticToken(given)
    return MintedToken(TokenIssuer.from_env(env), role=service_role(name))


def bearer_metadata(source: TokenSource) -> tuple[tuple[str, str]]:
    return ((METADATA_KEY, f"Bearer {source.token()}"),)


class _BearerBase:
    def __init__(self, source: TokenSource) -> None:
        self._source = source

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        pairs = [(k, v) for k, v in (details.metadata or ()) if k.lower() != METADATA_KEY]
        pairs.append((METADATA_KEY, f"Bearer {self._source.token()}"))
        return details._replace(metadata=grpc.aio.Metadata(*pairs))


class _BearerUnaryUnary(_BearerBase, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerUnaryStream(_BearerBase, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _BearerStreamUnary(_BearerBase, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _BearerStreamStream(_BearerBase, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]  # grpc ships no types
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def bearer_interceptors(source: TokenSource) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that attach `authorization: Bearer ...` to every call:
    `grpc.aio.insecure_channel(addr, interceptors=bearer_interceptors(src))`."""
    return [
        _BearerUnaryUnary(source),
        _BearerUnaryStream(source),
        _BearerStreamUnary(source),
        _BearerStreamStream(source),
    ]


def authorised_channel(target: str, source: TokenSource) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, interceptors=bearer_interceptors(source))
