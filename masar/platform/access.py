"""Who may call what: every RPC declares its roles (`requires`), the server's
interceptor verifies the bearer token — signature, lifetime, scope claims,
that it is for this service (`aud`) and not revoked — and refuses anything
undeclared (deny by default)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from masar.platform.errors import MasarError, PermissionDenied, Unauthenticated
from masar.platform.identity import (
    ANY_AUTHENTICATED,
    NO_TOKEN,
    Caller,
    Role,
    TokenVerifier,
    _current_caller,
    acting_as,
    bearer_token,
    log,
)
from masar.platform.revocation import RevocationList
from masar.platform.rpc import grpc_status

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
    `audience` is the service's name (a token for another service is
    refused); `revocations` the tokens to refuse although they verify.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        policy: AccessPolicy,
        *,
        clock: Callable[[], datetime] | None = None,
        audience: str | None = None,
        revocations: RevocationList | None = None,
    ) -> None:
        self._verifier = verifier
        self._policy = policy
        self._clock = clock or (lambda: datetime.now(UTC))
        self.audience = audience
        self.revocations = revocations

    def authorise(self, method: str, metadata: Iterable[tuple[str, Any]] | None) -> Caller:
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("missing bearer token")
        caller = self._verifier.verify(token, now=self._clock())
        if self.revocations is not None and self.revocations.revoked(caller):
            raise Unauthenticated("token revoked")
        if self.audience is not None and self.audience not in caller.audiences:
            raise PermissionDenied(f"the token is not for the {self.audience} service")
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
