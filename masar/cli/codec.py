"""`masar codec-server`: Temporal's remote codec endpoint, for coordinators
only, and only for the journeys each could read through intake's API
(masar.platform.codec_server)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable

import grpc
import grpc.aio

from masar.cli.connect import local_verifier
from masar.cli.output import CliError
from masar.platform.codec_server import (
    DEFAULT_ADDR,
    DEFAULT_CORS_ORIGINS,
    CodecLimits,
    CodecServer,
    codec_database_url,
)
from masar.platform.crypto import process_keyring
from masar.platform.db import Database
from masar.platform.errors import PermissionDenied, Unauthenticated, Unavailable
from masar.platform.identity import METADATA_KEY, Caller, TokenVerifier
from masar.platform.settings import CliSettings, CommonSettings, Env, SettingsError
from masar.v1 import intake_pb2, intake_pb2_grpc

_REFUSED = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)


class IntakeCaseAccess:
    """May a coordinator read a case? Intake decides, as for her own calls:
    `GetCaseFollowUp` (no personal data; audited by intake) with her own
    token — her region's cases, or one under an active emergency grant."""

    def __init__(self, address: str, *, timeout: float = 5.0) -> None:
        self._address = address
        self._timeout = timeout
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> intake_pb2_grpc.IntakeServiceStub:
        # Made on first use, in the event loop that serves the requests.
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._address)
        return intake_pb2_grpc.IntakeServiceStub(self._channel)

    async def check(self, caller: Caller, token: str, case_id: str) -> None:
        try:
            await self._stub().GetCaseFollowUp(
                intake_pb2.GetCaseFollowUpRequest(case_id=case_id),
                metadata=((METADATA_KEY, f"Bearer {token}"),),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _REFUSED:
                raise PermissionDenied("the case is not yours to read") from None
            if exc.code() is grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated("intake refused the token") from None
            raise Unavailable("intake cannot tell now") from None

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def codec_server_main(
    argv: list[str], *, ready: Callable[[CodecServer], None] | None = None
) -> int:
    """`masar codec-server [--listen HOST:PORT] [--cors-origin ORIGIN]... [--json]`;
    serves until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="masar codec-server",
        description="Decode Masar's encrypted Temporal payloads for authorised coordinators.",
    )
    parser.add_argument("--listen", default=None, help=f"host:port (default {DEFAULT_ADDR})")
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        help="a Temporal UI origin allowed to call (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    try:
        env = Env()
        listen = args.listen or env.address("MASAR_CODEC_ADDR", DEFAULT_ADDR)
        host, _, port_text = listen.rpartition(":")
        if not host or not port_text.isdigit():
            raise SettingsError("--listen must be host:port")
        origins = args.cors_origin
        if origins is None:
            configured = env.optional("MASAR_CODEC_CORS_ORIGINS")
            origins = configured.split(",") if configured else list(DEFAULT_CORS_ORIGINS)
        origins = [o.strip() for o in origins if o.strip()]
        cli = CliSettings.from_env()
        # The stack's keys, never fresh ones (they would trust no token).
        verifier = (
            TokenVerifier.from_env()
            if cli.token_public_key_set
            else local_verifier(cli, alternative="MASAR_TOKEN_PUBLIC_KEY")
        )
        intake_addr = CommonSettings.from_env(env).service_addrs["intake"]
        limits = CodecLimits.from_env()
        database = Database(codec_database_url())
        server = CodecServer(
            keyring=process_keyring(),
            verifier=verifier,
            database=database,
            access=IntakeCaseAccess(intake_addr),
            cors_origins=origins,
            limits=limits,
        )
    except SettingsError as exc:
        print(f"masar codec-server: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"masar codec-server: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        port = server.start(host, int(port_text))
    except OSError:
        print(f"masar codec-server: cannot listen on {listen}", file=sys.stderr)
        database.dispose()
        return 1
    url = f"http://{host}:{port}"
    if args.json:
        print(
            json.dumps(
                {
                    "url": url,
                    "cors_origins": origins,
                    "roles": ["coordinator"],
                    "intake": intake_addr,
                    "max_body_bytes": limits.max_body_bytes,
                    "max_concurrency": limits.max_concurrency,
                }
            )
        )
    else:
        print(
            f"codec server on {url} (coordinators only, their region's journeys or "
            f"emergency grants, as intake at {intake_addr} decides; CORS: {', '.join(origins)})"
        )
        print(f'  temporal ... --codec-endpoint {url} --codec-auth "Bearer $MASAR_TOKEN"')
        print(f"  Temporal UI codec endpoint: {url}/token/<coordinator token>")
    sys.stdout.flush()
    stop = threading.Event()
    if ready is not None:
        ready(server)
        stop.set()
    else:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.stop()
        database.dispose()
    return 0
