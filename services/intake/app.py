"""Wiring of the intake service: one factory, everything through constructors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from masar.contract import JOURNEY_TASK_QUEUE
from masar.platform.assertions import AssertionSigner
from masar.platform.channels import authorised_channel, service_token_source
from masar.platform.clock import utcnow
from masar.platform.consent_keys import consent_issuer
from masar.platform.db import Database
from masar.platform.idempotency import IdempotencyLedger
from masar.platform.process import SectorComponents, identity_environ, process_keys
from masar.platform.rpc import GrpcService
from masar.platform.settings import ServiceSettings
from masar.platform.temporal import TemporalConnector
from masar.referral import dial_address
from masar.referral.anchoring import service_anchorer
from masar.v1.intake_pb2_grpc import IntakeServiceStub, add_IntakeServiceServicer_to_server
from masar.v1.journey_pb2_grpc import add_JourneyServiceServicer_to_server
from services.intake.activities import IntakeActivities
from services.intake.grants import EmergencyAccess
from services.intake.journey import IntakeOutbox, JourneyStarter
from services.intake.journey_api import JourneyApi
from services.intake.journey_servicer import SERVICE_NAME as JOURNEY_SERVICE_NAME
from services.intake.journey_servicer import JourneyServicer
from services.intake.models import EMERGENCY_GRANTS, IDEMPOTENCY
from services.intake.service import CaseService
from services.intake.servicer import SERVICE_NAME, IntakeServicer
from services.intake.transfers import TransferService

if TYPE_CHECKING:
    from masar.v1.intake_pb2_grpc import IntakeServiceAsyncStub

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def build_components(
    settings: ServiceSettings,
    database: Database,
    connector: TemporalConnector,
    *,
    journey_task_queue: str = JOURNEY_TASK_QUEUE,
    clock: Callable[[], datetime] | None = None,
) -> SectorComponents:
    """`journey_task_queue` and `clock` are for tests only (a stand-in journey
    on its own queue; a clock for emergency grants and audit times); the
    service always starts journeys on `masar-journey`."""
    starter = JourneyStarter(database, connector, task_queue=journey_task_queue)
    outbox = IntakeOutbox(database, connector, starter=starter)
    environ = identity_environ(settings)
    # Intake's assertion key signs every Update its outbox delivers.
    outbox.signer = AssertionSigner.from_env("intake", environ)
    ledger = IdempotencyLedger(IDEMPOTENCY)
    cases = CaseService(
        database,
        outbox,
        starter,
        ledger=ledger,
        access=EmergencyAccess(EMERGENCY_GRANTS, clock=clock),
        # Intake signs the consent proofs the sectors need for each referral,
        # with a key of its own (never the token-signing key).
        issuer=consent_issuer(process_keys(settings)),
        clock=clock or utcnow,
    )
    transfers = TransferService(database, cases.changes, ledger=ledger, clock=clock or utcnow)
    intake_servicer = IntakeServicer(cases, transfers)
    # The journey API (masar.v1.JourneyService), beside IntakeService.
    journeys = JourneyApi(
        database,
        connector,
        access=EmergencyAccess(EMERGENCY_GRANTS, clock=clock),
        ledger=ledger,
        clock=clock or utcnow,
        # Intake's own assertion key signs the coordinators' Updates.
        signer=AssertionSigner.from_env("intake", environ),
    )
    # The activities call this very service through its gRPC API, as intake's
    # service identity.
    channel = authorised_channel(
        dial_address(settings.addr), service_token_source("intake", environ)
    )
    stub = cast("IntakeServiceAsyncStub", IntakeServiceStub(channel))
    activities = IntakeActivities(stub)
    return SectorComponents(
        grpc_services=[
            GrpcService(SERVICE_NAME, intake_servicer, add_IntakeServiceServicer_to_server),
            GrpcService(
                JOURNEY_SERVICE_NAME,
                JourneyServicer(journeys, intake_servicer),
                add_JourneyServiceServicer_to_server,
            ),
        ],
        activities=[activities.record_escalation, activities.record_transfer_rung],
        outbox=outbox,
        closers=[channel.close],
        anchorer=service_anchorer(settings, database),
    )
