"""`masar codec-server`: Temporal's remote codec endpoint, for coordinators only.

The Temporal UI and CLI show ciphertext until they are pointed at a codec
server. This one implements Temporal's remote codec protocol — POST
`.../encode` and `.../decode`, a `Payloads` message in protobuf JSON form in
and out (only the last part of a path selects the operation, as the protocol
asks) — as an ASGI application (Starlette) served by uvicorn, with bounded
concurrency (503 beyond it), a request-size limit (413), a body-read timeout
(408) and a per-request deadline (503).

Who may decode what: a coordinator, and only the payloads of journeys she
could read through intake's API — her region's cases, or a case she holds an
active emergency grant for. Every encrypted payload names the workflow it
belongs to (`masar-workflow-id` in its metadata, bound into the ciphertext by
the codec: masar.platform.codec), so the case is known per payload and a
caller cannot relabel one: the Temporal UI sends only `X-Namespace` (and an
`Authorization` header or cookies when configured), never a workflow id. The
server asks a `CaseAccess` — in production intake's `GetCaseFollowUp`, called
with the coordinator's own token (masar.cli.codec.IntakeCaseAccess), so intake
decides exactly as for her own calls — and remembers a yes for `ACCESS_TTL`
(a revoked grant stops decoding within that). A request with one payload she
may not read is refused whole (403); a payload sealed without a workflow, or
of a workflow that is not a journey, is refused to everyone. Plaintext
payloads pass through unchanged (they are what the caller sent).

`/encode` seals payloads for one journey, named by the `X-Masar-Workflow-Id`
header (`journey-<case_id>`; required), with the same check.

Audit: every decode and every encode is an entry in the codec server's own
database — who, `temporal.payloads.decoded` / `.encoded`, the case id and the
namespace — written before any plaintext or ciphertext is returned; a decode
or encode refused for a case is audited too (`..._refused`). 401 without a
valid token, 403 for any role but coordinator (those are not audited: no
case is known yet).

The token travels in `Authorization: Bearer ...` (the `temporal` CLI:
`--codec-endpoint URL --codec-auth "Bearer TOKEN"`), or — for a UI without a
login of its own, such as the dev server's — in the endpoint URL itself:
`http://127.0.0.1:8081/token/TOKEN`, the UI then posting to
`.../token/TOKEN/decode`. Request paths are never logged (no access log).

Settings: MASAR_CODEC_ADDR (default 127.0.0.1:8081), MASAR_CODEC_CORS_ORIGINS
(comma separated; default the local Temporal UI, http://localhost:8233 and
http://127.0.0.1:8233), MASAR_CODEC_DATABASE_URL (default
$MASAR_DATA_DIR/codec.db), MASAR_CODEC_MAX_BODY_BYTES (default 8 MiB),
MASAR_CODEC_MAX_CONCURRENCY (default 32), MASAR_CODEC_TIMEOUT_SECONDS (default
30), plus the key ring and token key variables and intake's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Protocol

import anyio.to_thread
import uvicorn
from anyio import CapacityLimiter
from google.protobuf import json_format
from sqlalchemy import MetaData
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads

from masar.platform import audit
from masar.platform.codec import (
    PayloadDecryptionError,
    decrypt_payload,
    encrypt_payload,
    is_encrypted,
    payload_workflow_id,
)
from masar.platform.crypto import Keyring
from masar.platform.db import Database
from masar.platform.errors import PermissionDenied, Unauthenticated, Unavailable
from masar.platform.identity import Caller, Role, TokenVerifier
from masar.platform.settings import Env, SettingsError

log = logging.getLogger(__name__)

DEFAULT_ADDR = "127.0.0.1:8081"
DEFAULT_CORS_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
DECODERS = frozenset({Role.COORDINATOR})
MAX_BODY_BYTES = 8 * 1024 * 1024
ACTION_DECODE = "temporal.payloads.decoded"
ACTION_ENCODE = "temporal.payloads.encoded"
ACTION_DECODE_REFUSED = "temporal.payloads.decode_refused"
ACTION_ENCODE_REFUSED = "temporal.payloads.encode_refused"
WORKFLOW_HEADER = "X-Masar-Workflow-Id"
JOURNEY_PREFIX = "journey-"
# How long intake's yes for (token, case) is remembered.
ACCESS_TTL = 30.0
_ACCESS_CACHE_MAX = 10_000
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# The codec server's own small database holds only its audit log.
_AUDIT = audit.audit_tables(MetaData())


def codec_database_url(environ: Mapping[str, str] | None = None) -> str:
    """Where the codec server keeps its audit log."""
    env = Env(environ)
    url = env.optional("MASAR_CODEC_DATABASE_URL")
    if url is None:
        data_dir = Path(env.text("MASAR_DATA_DIR", "./var")).expanduser()
        return f"sqlite:///{(data_dir / 'codec.db').resolve()}"
    if not url.startswith(("sqlite:", "postgresql")):
        raise SettingsError(
            "MASAR_CODEC_DATABASE_URL must be a sqlite:/// or postgresql+psycopg:// URL"
        )
    return url


@dataclass(frozen=True, kw_only=True)
class CodecLimits:
    """What one request may cost."""

    max_body_bytes: int = MAX_BODY_BYTES
    # Connections and requests in flight; uvicorn answers 503 beyond.
    max_concurrency: int = 32
    # Reading the body (408 past it) and the whole request (503 past it).
    read_timeout: float = 10.0
    request_timeout: float = 30.0
    keep_alive_timeout: int = 5
    max_payloads: int = 10_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CodecLimits:
        env = Env(environ)
        timeout = env.integer("MASAR_CODEC_TIMEOUT_SECONDS", 30, minimum=1, maximum=600)
        return cls(
            max_body_bytes=env.integer(
                "MASAR_CODEC_MAX_BODY_BYTES", MAX_BODY_BYTES, minimum=1024, maximum=256 * 2**20
            ),
            max_concurrency=env.integer("MASAR_CODEC_MAX_CONCURRENCY", 32, minimum=1, maximum=4096),
            read_timeout=min(10.0, float(timeout)),
            request_timeout=float(timeout),
        )


class CaseAccess(Protocol):
    """May this caller read this case? Raises `PermissionDenied` if not,
    `Unauthenticated` if the token is refused, `Unavailable` if it cannot tell."""

    async def check(self, caller: Caller, token: str, case_id: str) -> None: ...

    async def aclose(self) -> None: ...


class _Refusal(Exception):
    def __init__(self, status: HTTPStatus, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def case_of_workflow(workflow_id: str | None) -> str | None:
    """`journey-<case_id>` -> case_id; None for anything else."""
    if not workflow_id or not workflow_id.startswith(JOURNEY_PREFIX):
        return None
    case_id = workflow_id.removeprefix(JOURNEY_PREFIX)
    return case_id if _CASE_ID.fullmatch(case_id) else None


def _bearer(authorization: str | None, path: str) -> str | None:
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if len(parts) >= 3 and parts[-3] == "token":
        return parts[-2]
    return None


class CodecServer:
    """The codec endpoint: `app` is the ASGI application; `start` serves it
    with uvicorn from a thread (for `masar codec-server` and tests)."""

    def __init__(
        self,
        *,
        keyring: Keyring,
        verifier: TokenVerifier,
        database: Database,
        access: CaseAccess,
        cors_origins: Iterable[str] = DEFAULT_CORS_ORIGINS,
        decoders: Iterable[Role] = DECODERS,
        limits: CodecLimits | None = None,
        access_ttl: float = ACCESS_TTL,
    ) -> None:
        self.keyring = keyring
        self.verifier = verifier
        self.database = database
        self.access = access
        self.cors_origins = frozenset(o.rstrip("/") for o in cors_origins)
        self.decoders = frozenset(decoders)
        self.limits = limits or CodecLimits()
        self.access_ttl = access_ttl
        self._allowed: dict[tuple[str, str], float] = {}
        self._limiter: CapacityLimiter | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = Starlette(
            routes=[Route("/{path:path}", self._endpoint, methods=["POST", "OPTIONS"])],
            lifespan=self._lifespan,
        )

    # --- lifecycle ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._limiter = CapacityLimiter(self.limits.max_concurrency)
        try:
            yield
        finally:
            await self.access.aclose()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on host:port (0: any free port) until `stop`; returns the port."""
        _AUDIT.log.metadata.create_all(self.database.engine)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,  # a path may carry a token
            lifespan="on",
            limit_concurrency=self.limits.max_concurrency,
            timeout_keep_alive=self.limits.keep_alive_timeout,
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=64 * 1024,
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._socket = sock
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="masar-codec-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OSError("the codec server did not start")
            time.sleep(0.01)
        return self.port

    @property
    def port(self) -> int:
        assert self._socket is not None, "not started"
        return int(self._socket.getsockname()[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._server = None

    # --- authorisation -------------------------------------------------------------

    def authorise(self, authorization: str | None, path: str) -> tuple[Caller, str]:
        """The caller (a decoder role) and her token; 401/403 otherwise."""
        token = _bearer(authorization, path)
        if token is None:
            raise Unauthenticated("missing bearer token")
        caller = self.verifier.verify(token)
        if caller.role not in self.decoders:
            raise PermissionDenied(f"role {caller.role.value} may not decode payloads")
        return caller, token

    async def _check_case(self, caller: Caller, token: str, case_id: str) -> None:
        key = (hashlib.sha256(token.encode()).hexdigest(), case_id)
        now = time.monotonic()
        if self._allowed.get(key, 0.0) > now:
            return
        await self.access.check(caller, token, case_id)
        if len(self._allowed) >= _ACCESS_CACHE_MAX:
            self._allowed = {k: t for k, t in self._allowed.items() if t > now}
            if len(self._allowed) >= _ACCESS_CACHE_MAX:
                self._allowed.clear()
        self._allowed[key] = now + self.access_ttl

    async def _audit(self, caller: Caller, action: str, case_ids: Iterable[str], ns: str) -> None:
        def write() -> None:
            def entries(session: Session) -> None:
                for case_id in sorted(set(case_ids)):
                    audit.append(
                        session,
                        actor=caller,
                        action=action,
                        case_id=case_id,
                        target=f"namespace:{ns}",
                        keyring=self.keyring,
                    )

            self.database.call(entries)

        await anyio.to_thread.run_sync(write, limiter=self._limiter)

    async def _authorise_cases(
        self, caller: Caller, token: str, case_ids: list[str], ns: str, refused: str
    ) -> None:
        for case_id in sorted(set(case_ids)):
            try:
                await self._check_case(caller, token, case_id)
            except PermissionDenied:
                await self._audit(caller, refused, [case_id], ns)
                raise _Refusal(
                    HTTPStatus.FORBIDDEN, "a payload belongs to a case you may not read"
                ) from None

    # --- the operations --------------------------------------------------------------

    async def decode(self, payloads: Payloads, caller: Caller, token: str, ns: str) -> Payloads:
        case_ids: list[str] = []
        for payload in payloads.payloads:
            if not is_encrypted(payload):
                continue  # plaintext: returned as it came
            case_id = case_of_workflow(payload_workflow_id(payload))
            if case_id is None:
                raise _Refusal(HTTPStatus.FORBIDDEN, "a payload is bound to no journey")
            case_ids.append(case_id)
        await self._authorise_cases(caller, token, case_ids, ns, ACTION_DECODE_REFUSED)

        def open_all() -> list[Payload]:
            return [decrypt_payload(self.keyring, p) for p in payloads.payloads]

        try:
            out = await anyio.to_thread.run_sync(open_all, limiter=self._limiter)
        except PayloadDecryptionError:
            raise _Refusal(HTTPStatus.BAD_REQUEST, "a payload could not be decrypted") from None
        if case_ids:
            # No audit entry, no plaintext.
            await self._audit(caller, ACTION_DECODE, case_ids, ns)
        return Payloads(payloads=out)

    async def encode(
        self, payloads: Payloads, caller: Caller, token: str, ns: str, workflow_id: str | None
    ) -> Payloads:
        case_id = case_of_workflow(workflow_id)
        if case_id is None:
            raise _Refusal(
                HTTPStatus.BAD_REQUEST, f"encode needs {WORKFLOW_HEADER}: journey-<case_id>"
            )
        await self._authorise_cases(caller, token, [case_id], ns, ACTION_ENCODE_REFUSED)

        def seal_all() -> list[Payload]:
            return [
                encrypt_payload(self.keyring, p, workflow_id=workflow_id) for p in payloads.payloads
            ]

        out = await anyio.to_thread.run_sync(seal_all, limiter=self._limiter)
        await self._audit(caller, ACTION_ENCODE, [case_id], ns)
        return Payloads(payloads=out)

    # --- HTTP ---------------------------------------------------------------------------

    def _cors_headers(self, request: Request) -> dict[str, str] | None:
        """None: a browser origin we do not serve."""
        origin = request.headers.get("origin")
        if origin is None:
            return {}  # not a browser (the temporal CLI)
        if origin.rstrip("/") not in self.cors_origins:
            return None
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    @staticmethod
    def _reply(status: HTTPStatus, body: bytes, headers: Mapping[str, str]) -> Response:
        extra = dict(headers)
        extra["Cache-Control"] = "no-store"
        if status == HTTPStatus.UNAUTHORIZED:
            extra["WWW-Authenticate"] = 'Bearer realm="masar-codec"'
        return Response(body, status_code=status, headers=extra, media_type="application/json")

    def _error(self, status: HTTPStatus, error: str, headers: Mapping[str, str]) -> Response:
        return self._reply(status, json.dumps({"error": error}).encode(), headers)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise _Refusal(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            if int(declared) > limit:
                raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.read_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
                    chunks.append(chunk)
        except TimeoutError:
            raise _Refusal(HTTPStatus.REQUEST_TIMEOUT, "body not received in time") from None
        return b"".join(chunks)

    def _parse(self, body: bytes) -> Payloads:
        payloads = Payloads()
        try:
            json_format.Parse(body.decode("utf-8"), payloads)
        except (json_format.ParseError, UnicodeDecodeError, ValueError, RecursionError):
            raise _Refusal(
                HTTPStatus.BAD_REQUEST, "body is not Payloads in protobuf JSON"
            ) from None
        if len(payloads.payloads) > self.limits.max_payloads:
            raise _Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too many payloads")
        return payloads

    async def _endpoint(self, request: Request) -> Response:
        cors = self._cors_headers(request)
        if cors is None:
            return self._reply(HTTPStatus.FORBIDDEN, b'{"error":"origin not allowed"}', {})
        if request.method == "OPTIONS":  # CORS preflight: browsers send no credentials
            if not cors:
                return self._reply(HTTPStatus.FORBIDDEN, b'{"error":"origin not allowed"}', {})
            headers = {
                **cors,
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": (
                    f"Authorization, Content-Type, X-Namespace, {WORKFLOW_HEADER}"
                ),
                "Access-Control-Max-Age": "600",
            }
            return Response(status_code=HTTPStatus.NO_CONTENT, headers=headers)
        path = request.url.path
        operation = path.rstrip("/").rsplit("/", 1)[-1]
        if operation not in ("encode", "decode"):
            return self._error(HTTPStatus.NOT_FOUND, "POST .../encode or .../decode", cors)
        try:
            caller, token = self.authorise(request.headers.get("authorization"), path)
        except Unauthenticated as exc:
            return self._error(HTTPStatus.UNAUTHORIZED, exc.message, cors)
        except PermissionDenied as exc:
            return self._error(HTTPStatus.FORBIDDEN, exc.message, cors)
        namespace = request.headers.get("x-namespace") or "unknown"
        if not _NAMESPACE.fullmatch(namespace):
            namespace = "unknown"
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                payloads = self._parse(await self._read_body(request))
                if operation == "encode":
                    out = await self.encode(
                        payloads, caller, token, namespace, request.headers.get(WORKFLOW_HEADER)
                    )
                else:
                    out = await self.decode(payloads, caller, token, namespace)
        except _Refusal as exc:
            return self._error(exc.status, exc.error, cors)
        except Unauthenticated as exc:
            return self._error(HTTPStatus.UNAUTHORIZED, exc.message, cors)
        except (Unavailable, TimeoutError):
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, "try again later", cors)
        except ClientDisconnect:
            return self._error(HTTPStatus.BAD_REQUEST, "client went away", cors)
        except Exception:
            log.exception("codec request failed", extra={"operation": operation})
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", cors)
        body = json_format.MessageToJson(out, indent=None).encode()
        return self._reply(HTTPStatus.OK, body, cors)
