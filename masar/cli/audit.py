"""`masar audit verify`: check every service's hash-chained audit log, and
each against the anchors the network service keeps of it
(masar.platform.audit_anchor)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from masar.contract import ServiceName
from masar.platform.audit import Problem, VerifyResult, has_audit_log, verify
from masar.platform.audit_anchor import (
    Anchor,
    AnchorPublicKeys,
    check_anchors,
    missing_log_problem,
    read_anchors,
)
from masar.platform.codec_server import codec_database_url
from masar.platform.crypto import Keyring, process_keyring
from masar.platform.db import make_engine
from masar.platform.settings import (
    DATA_KEYRING_FILE,
    Env,
    ServiceSettings,
    SettingsError,
    own_keys_dir,
)

AUDITED = (
    "intake",
    "shelter",
    "legal",
    "employment",
    "health",
    "psychosocial",
    "network",
    "codec",
)
ANCHOR_STORE: ServiceName = "network"


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


def _anchors(environ: Mapping[str, str] | None) -> dict[str, list[Anchor]] | None:
    """Every anchor the network database holds; None when it holds none
    (no database, or not yet migrated to anchors)."""
    url = ServiceSettings.from_env(ANCHOR_STORE, environ).database_url
    if _absent_sqlite(url):
        return None
    engine = make_engine(url)
    try:
        return read_anchors(engine)
    finally:
        engine.dispose()


def _problem_dict(problem: Problem) -> dict[str, Any]:
    return dict(problem.__dict__)


def _verify_one(
    url: str,
    anchors: list[Anchor],
    ring_of: Any,
    keys: AnchorPublicKeys,
) -> dict[str, Any]:
    """One service's report: absent, missing (its tables are gone), intact or tampered."""
    gone = missing_log_problem(anchors)
    if _absent_sqlite(url):
        if gone is None:
            return {"status": "absent"}
        return {"status": "missing", "problems": [_problem_dict(gone)]}
    engine = make_engine(url)
    try:
        if not has_audit_log(engine):
            tables = set(inspect(engine).get_table_names())
            if gone is None and not tables:
                return {"status": "absent"}  # never created (an empty database)
            problem = gone or Problem(
                None, "tables_missing", "the audit tables are gone from a service database"
            )
            return {"status": "missing", "problems": [_problem_dict(problem)]}
        result: VerifyResult = verify(engine, keyring=ring_of())
        check_anchors(engine, anchors, keys, result)
    finally:
        engine.dispose()
    last = max(anchors, key=lambda a: a.sequence) if anchors else None
    return {
        "status": "intact" if result.ok else "tampered",
        "entries": result.entries,
        "head": {"seq": result.head_seq, "hash": result.head_hash},
        "anchor": None if last is None else {"seq": last.sequence, "hash": last.head_hash},
        "problems": [_problem_dict(p) for p in result.problems],
    }


def audit_verify_main(argv: list[str], environ: Mapping[str, str] | None = None) -> int:
    """`masar audit verify [--service NAME|all] [--json]`: 0 when every log
    found is intact and holds its anchors, 1 when any was tampered with,
    rolled back, erased or dropped, 2 on a configuration error. A service
    whose database was never created is reported absent."""
    parser = argparse.ArgumentParser(
        prog="masar audit verify", description="Verify the services' hash-chained audit logs."
    )
    parser.add_argument("--service", choices=[*AUDITED, "all"], default="all")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)

    names = AUDITED if args.service == "all" else (args.service,)
    ring: list[Keyring] = []

    def shared_ring() -> Keyring:
        # Only once a log is found: a data dir without one gets no key ring.
        if not ring:
            ring.append(Keyring.from_env(environ) if environ is not None else process_keyring())
        return ring[0]

    def ring_for(name: str) -> Any:
        """Each service's own data key ring (the local stack's keys/<name>/),
        unless one shared ring is configured (MASAR_KEYRING, MASAR_KEY_FILE)."""
        env = Env(environ)
        own = own_keys_dir(Path(env.text("MASAR_DATA_DIR", "./var")), name) / DATA_KEYRING_FILE
        if env.optional("MASAR_KEYRING") or env.optional("MASAR_KEY_FILE") or not own.is_file():
            return shared_ring
        return lambda: Keyring.from_json(own.read_text(), source=str(own))

    try:
        urls = _database_urls(names, environ)
        anchors = _anchors(environ)
        keys = AnchorPublicKeys.from_env(environ)
        report = {
            name: _verify_one(url, (anchors or {}).get(name, []), ring_for(name), keys)
            for name, url in urls.items()
        }
    except SettingsError as exc:
        print(f"masar audit verify: configuration error: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        print(
            f"masar audit verify: a database could not be read ({type(exc).__name__})",
            file=sys.stderr,
        )
        return 1
    failed = [n for n, r in report.items() if r["status"] in ("tampered", "missing")]
    if args.json:
        print(json.dumps({"ok": not failed, "anchored": anchors is not None, "services": report}))
    else:
        for name, r in report.items():
            if r["status"] == "absent":
                print(f"{name}: no audit log")
                continue
            if r["status"] == "missing":
                print(f"{name}: missing")
            else:
                head, anchor = r["head"], r["anchor"]
                anchored = f", anchored at {anchor['seq']}" if anchor else ""
                print(
                    f"{name}: {r['status']}, {r['entries']} entries, "
                    f"head {head['seq']}:{(head['hash'] or '')[:16]}{anchored}"
                )
            for p in r["problems"]:
                where = f"entry {p['seq']}" if p["seq"] is not None else "head"
                print(f"  {where}: {p['kind']} ({p['detail']})")
    if failed:
        first = report[failed[0]]["problems"][0]
        print(
            f"masar audit verify: FAILED: {', '.join(failed)} "
            f"({failed[0]}: {first['kind']}: {first['detail']})",
            file=sys.stderr,
        )
        return 1
    return 0
