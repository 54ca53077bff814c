"""`masar codec-server`: Temporal's remote codec endpoint, for coordinators only.

The Temporal UI and CLI show ciphertext until they are pointed at a codec
server. This one implements Temporal's remote codec protocol — POST
`.../encode` and `.../decode`, a `Payloads` message in protobuf JSON form in
and out — and refuses anyone who does not present a valid token of an
authorised role (coordinator): 401 without a valid token, 403 for any other
role. Every decode is an audit entry (who, which namespace), in the codec
server's own database.

The token travels in `Authorization: Bearer ...` (the `temporal` CLI:
`--codec-endpoint URL --codec-auth "Bearer TOKEN"`), or — for a UI without a
login of its own, such as the dev server's — in the endpoint URL itself:
`http://127.0.0.1:8081/token/TOKEN`, the UI then posting to
`.../token/TOKEN/decode`. Only the last part of a path selects the operation,
as the protocol asks. Request paths are never logged.

Settings: MASAR_CODEC_ADDR (default 127.0.0.1:8081), MASAR_CODEC_CORS_ORIGINS
(comma separated; default the local Temporal UI, http://localhost:8233 and
http://127.0.0.1:8233), MASAR_CODEC_DATABASE_URL (default
$MASAR_DATA_DIR/codec.db), plus the key ring and token key variables.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from sqlalchemy import MetaData
from temporalio.api.common.v1 import Payloads

from masar.platform import audit
from masar.platform.codec import PayloadDecryptionError, decrypt_payload, encrypt_payload
from masar.platform.crypto import Keyring
from masar.platform.db import Database
from masar.platform.errors import MasarError, PermissionDenied, Unauthenticated
from masar.platform.identity import Caller, Role, TokenVerifier
from masar.platform.settings import Env, SettingsError

log = logging.getLogger(__name__)

DEFAULT_ADDR = "127.0.0.1:8081"
DEFAULT_CORS_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
DECODERS = frozenset({Role.COORDINATOR})
MAX_BODY_BYTES = 8 * 1024 * 1024
ACTION_DECODE = "temporal.payloads.decoded"
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
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


class _Refusal(Exception):
    def __init__(self, status: HTTPStatus, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class CodecServer:
    """The HTTP endpoint, served from a thread (stdlib only)."""

    def __init__(
        self,
        *,
        keyring: Keyring,
        verifier: TokenVerifier,
        database: Database,
        cors_origins: Iterable[str] = DEFAULT_CORS_ORIGINS,
        decoders: Iterable[Role] = DECODERS,
    ) -> None:
        self.keyring = keyring
        self.verifier = verifier
        self.database = database
        self.cors_origins = frozenset(o.rstrip("/") for o in cors_origins)
        self.decoders = frozenset(decoders)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        _AUDIT.log.metadata.create_all(self.database.engine)
        self._httpd = ThreadingHTTPServer((host, port), _handler_class(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # how quickly `stop` is noticed
            name="masar-codec-server",
            daemon=True,
        )
        self._thread.start()
        return int(self._httpd.server_address[1])

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return int(self._httpd.server_address[1])

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # --- requests -----------------------------------------------------------------

    def authorise(self, authorization: str | None, path: str) -> Caller:
        token = None
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        if token is None:
            parts = [p for p in path.split("?", 1)[0].split("/") if p]
            if len(parts) >= 3 and parts[-3] == "token":
                token = parts[-2]
        if token is None:
            raise Unauthenticated("missing bearer token")
        caller = self.verifier.verify(token)
        if caller.role not in self.decoders:
            raise PermissionDenied(f"role {caller.role.value} may not decode payloads")
        return caller

    def transform(self, operation: str, body: bytes, caller: Caller, namespace: str) -> bytes:
        payloads = Payloads()
        try:
            json_format.Parse(body.decode("utf-8"), payloads)
        except (json_format.ParseError, UnicodeDecodeError, ValueError):
            raise _Refusal(
                HTTPStatus.BAD_REQUEST, "body is not Payloads in protobuf JSON"
            ) from None
        if operation == "encode":
            out = [encrypt_payload(self.keyring, p) for p in payloads.payloads]
        else:
            try:
                out = [decrypt_payload(self.keyring, p) for p in payloads.payloads]
            except PayloadDecryptionError:
                raise _Refusal(HTTPStatus.BAD_REQUEST, "a payload could not be decrypted") from None
            # No audit entry, no plaintext.
            self.database.call(
                lambda session: audit.append(
                    session,
                    actor=caller,
                    action=ACTION_DECODE,
                    target=f"namespace:{namespace}",
                    keyring=self.keyring,
                )
            )
        return json_format.MessageToJson(Payloads(payloads=out), indent=None).encode()


def _handler_class(server: CodecServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "masar-codec"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            # The default logs the request line, and a path may carry a token.
            pass

        def _cors(self) -> bool:
            origin = self.headers.get("Origin")
            if origin is None:
                return True  # not a browser (the temporal CLI)
            if origin.rstrip("/") not in server.cors_origins:
                return False
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")
            return True

        def _reply(self, status: HTTPStatus, body: bytes, *, cors: bool = True) -> None:
            self.send_response(status)
            if cors:
                self._cors()
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Bearer realm="masar-codec"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: HTTPStatus, error: str) -> None:
            self._reply(status, json.dumps({"error": error}).encode())

        def do_OPTIONS(self) -> None:  # CORS preflight: browsers send no credentials
            origin = self.headers.get("Origin")
            if origin is None or origin.rstrip("/") not in server.cors_origins:
                self._reply(HTTPStatus.FORBIDDEN, b'{"error":"origin not allowed"}', cors=False)
                return
            self.send_response(HTTPStatus.NO_CONTENT)
            self._cors()
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header(
                "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace"
            )
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            origin = self.headers.get("Origin")
            if origin is not None and origin.rstrip("/") not in server.cors_origins:
                self._reply(HTTPStatus.FORBIDDEN, b'{"error":"origin not allowed"}', cors=False)
                return
            operation = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            if operation not in ("encode", "decode"):
                self._error(HTTPStatus.NOT_FOUND, "POST .../encode or .../decode")
                return
            try:
                caller = server.authorise(self.headers.get("Authorization"), self.path)
            except Unauthenticated as exc:
                self._error(HTTPStatus.UNAUTHORIZED, exc.message)
                return
            except PermissionDenied as exc:
                self._error(HTTPStatus.FORBIDDEN, exc.message)
                return
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large or unsized")
                return
            body = self.rfile.read(length)
            namespace = self.headers.get("X-Namespace") or "unknown"
            if not _NAMESPACE.fullmatch(namespace):
                namespace = "unknown"
            try:
                reply = server.transform(operation, body, caller, namespace)
            except _Refusal as exc:
                self._error(exc.status, exc.error)
                return
            except MasarError as exc:  # pragma: no cover - defensive
                self._error(HTTPStatus.BAD_REQUEST, exc.message)
                return
            except Exception:
                log.exception("codec request failed", extra={"operation": operation})
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
                return
            self._reply(HTTPStatus.OK, reply)

    return Handler
