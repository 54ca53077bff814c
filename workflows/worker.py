"""The journey worker: runs SurvivorJourney on `masar-journey`.

`python -m workflows` reads WorkerSettings from the environment, loads and
checks the SLA policy (the shipped default, or MASAR_POLICY_FILE), reads the
issuers' public assertion keys at each journey run's start
(MASAR_ASSERTION_PUBLIC_KEYS, else $MASAR_DATA_DIR/keys; see
masar.platform.assertions), connects to
Temporal (retrying while it is unreachable) and runs until SIGTERM or SIGINT,
then shuts down gracefully. A malformed setting or policy stops it at start
with a one-line message naming the key, and exit status 2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from masar.contract import JOURNEY_TASK_QUEUE
from masar.platform.assertions import PublicKeySource, public_keys_path
from masar.platform.logs import setup_logging
from masar.platform.rpc import install_shutdown_signals
from masar.platform.settings import SettingsError, WorkerSettings, process_environ
from masar.platform.temporal import TemporalConnector
from workflows.activities import IssuerKeySource, PolicyActivities
from workflows.journey import SurvivorJourney
from workflows.policy import SlaPolicy, load_policy

log = logging.getLogger(__name__)


def build_worker(
    client: Client,
    policy: SlaPolicy,
    *,
    task_queue: str = JOURNEY_TASK_QUEUE,
    extra_activities: Sequence[Any] = (),
    issuer_keys: IssuerKeySource | None = None,
    **options: Any,
) -> Worker:
    """The journey worker: the workflow and the policy's local activity.
    `issuer_keys` gives the public assertion keys at each run's start; by
    default those of the signers of this process only (tests)."""
    keys = issuer_keys if issuer_keys is not None else PublicKeySource(None)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SurvivorJourney],
        activities=[PolicyActivities(policy, keys).load_policy, *extra_activities],
        **options,
    )


def issuer_key_source(settings: WorkerSettings) -> PublicKeySource:
    """The public assertion keys the worker hands to journeys."""
    environ = {**process_environ(), "MASAR_DATA_DIR": str(settings.common.data_dir)}
    return PublicKeySource(public_keys_path(environ))


async def run_worker(
    settings: WorkerSettings, policy: SlaPolicy, *, stop: asyncio.Event | None = None
) -> int:
    """Run until `stop` is set (SIGTERM/SIGINT when not given); the exit status."""
    if stop is None:
        stop = asyncio.Event()
        install_shutdown_signals(stop)
    client = await TemporalConnector(settings.common.temporal).wait(stop)
    if client is None:
        return 0
    worker = build_worker(client, policy, issuer_keys=issuer_key_source(settings))
    run = asyncio.create_task(worker.run())
    stopper = asyncio.create_task(stop.wait())
    log.info(
        "journey worker started",
        extra={"task_queue": JOURNEY_TASK_QUEUE, "address": settings.common.temporal.address},
    )
    done, _ = await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if run in done:
        stopper.cancel()
        exc = run.exception()
        log.error("journey worker failed", extra={"error": type(exc).__name__ if exc else None})
        return 1
    log.info("journey worker stopping")
    await worker.shutdown()
    await asyncio.gather(run, return_exceptions=True)
    log.info("journey worker stopped")
    return 0


def main() -> None:
    try:
        settings = WorkerSettings.from_env()
    except SettingsError as exc:
        print(f"masar journey: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        policy = load_policy(settings.policy_file)
    except SettingsError as exc:
        source = "MASAR_POLICY_FILE" if settings.policy_file else "the shipped policy"
        print(f"masar journey: invalid SLA policy in {source}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging("journey", level=settings.common.log_level, fmt=settings.common.log_format)
    from masar.platform.telemetry import setup_telemetry

    telemetry = setup_telemetry("journey", metrics_port=settings.metrics_port)
    try:
        status = asyncio.run(run_worker(settings, policy))
    finally:
        telemetry.shutdown()
    # Everything is stopped and flushed. Leave without finalizing the
    # interpreter: the Temporal core's native threads may still touch Python
    # while it finalizes, which aborts the process ("PyGILState_Release").
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
