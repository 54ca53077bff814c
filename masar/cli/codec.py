"""`masar codec-server`: Temporal's remote codec endpoint, for coordinators
only (masar.platform.codec_server)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable

from masar.cli.connect import local_issuer
from masar.cli.output import CliError
from masar.platform.codec_server import (
    DEFAULT_ADDR,
    DEFAULT_CORS_ORIGINS,
    CodecServer,
    codec_database_url,
)
from masar.platform.crypto import process_keyring
from masar.platform.db import Database
from masar.platform.identity import TokenVerifier
from masar.platform.settings import CliSettings, Env, SettingsError


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
            else local_issuer(cli, alternative="MASAR_TOKEN_PUBLIC_KEY").verifier()
        )
        database = Database(codec_database_url())
        server = CodecServer(
            keyring=process_keyring(),
            verifier=verifier,
            database=database,
            cors_origins=origins,
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
        print(json.dumps({"url": url, "cors_origins": origins, "roles": ["coordinator"]}))
    else:
        print(f"codec server on {url} (coordinators only; CORS: {', '.join(origins)})")
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
