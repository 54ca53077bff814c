"""`masar audit verify`: check every service's hash-chained audit log."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from masar.platform.audit import has_audit_log, verify
from masar.platform.codec_server import codec_database_url
from masar.platform.crypto import Keyring, process_keyring
from masar.platform.db import make_engine
from masar.platform.settings import ServiceSettings, SettingsError

AUDITED = ("intake", "shelter", "legal", "employment", "codec")


def _database_urls(services: Iterable[str], environ: Mapping[str, str] | None) -> dict[str, str]:
    urls: dict[str, str] = {}
    for name in services:
        if name == "codec":
            urls[name] = codec_database_url(environ)
        else:
            urls[name] = ServiceSettings.from_env(name, environ).database_url  # type: ignore[arg-type]
    return urls


def _absent_sqlite(url: str) -> bool:
    if not url.startswith("sqlite"):
        return False
    path = url.split("sqlite:///", 1)[-1]
    return bool(path) and path != ":memory:" and not Path(path).exists()


def audit_verify_main(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    """`masar audit verify [--service NAME|all] [--json]`: 0 when every log
    found is intact, 1 when any was tampered with, 2 on a configuration error.
    A service whose database or audit tables do not exist is reported absent."""
    parser = argparse.ArgumentParser(
        prog="masar audit verify", description="Verify the services' hash-chained audit logs."
    )
    parser.add_argument("--service", choices=[*AUDITED, "all"], default="all")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)

    names = AUDITED if args.service == "all" else (args.service,)
    try:
        urls = _database_urls(names, environ)
    except SettingsError as exc:
        print(f"masar audit verify: configuration error: {exc}", file=sys.stderr)
        return 2
    ring: Keyring | None = None
    report: dict[str, dict[str, Any]] = {}
    for name, url in urls.items():
        if _absent_sqlite(url):
            report[name] = {"status": "absent"}
            continue
        engine = make_engine(url)
        try:
            if not has_audit_log(engine):
                report[name] = {"status": "absent"}
                continue
            if ring is None:
                # Only once a log is found: a data dir without one gets no key ring.
                try:
                    ring = Keyring.from_env(environ) if environ is not None else process_keyring()
                except SettingsError as exc:
                    print(f"masar audit verify: configuration error: {exc}", file=sys.stderr)
                    return 2
            result = verify(engine, keyring=ring)
        finally:
            engine.dispose()
        report[name] = {
            "status": "intact" if result.ok else "tampered",
            "entries": result.entries,
            "head": {"seq": result.head_seq, "hash": result.head_hash},
            "problems": [p.__dict__ for p in result.problems],
        }
    tampered = [n for n, r in report.items() if r["status"] == "tampered"]
    if args.json:
        print(json.dumps({"ok": not tampered, "services": report}))
    else:
        for name, r in report.items():
            if r["status"] == "absent":
                print(f"{name}: no audit log")
                continue
            head = r["head"]
            print(
                f"{name}: {r['status']}, {r['entries']} entries, "
                f"head {head['seq']}:{(head['hash'] or '')[:16]}"
            )
            for p in r["problems"]:
                where = f"entry {p['seq']}" if p["seq"] is not None else "head"
                print(f"  {where}: {p['kind']} ({p['detail']})")
    return 1 if tampered else 0
