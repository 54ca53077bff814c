"""Wiring of the intake service: one factory, everything through constructors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc

from masar.contract import JOURNEY_TASK_QUEUE
from masar.db import Database
from masar.grpc_server import GrpcService
from masar.service import SectorComponents
from masar.settings import ServiceSettings
from masar.temporal import TemporalConnector
from masar.v1.intake_pb2_grpc import IntakeServiceStub, add_IntakeServiceServicer_to_server
from services.intake.activities import IntakeActivities
from services.intake.cases import CaseDesk
from services.intake.journey import IntakeOutbox, JourneyStarter
from services.intake.servicer import SERVICE_NAME, IntakeServicer

if TYPE_CHECKING:
    from masar.v1.intake_pb2_grpc import IntakeServiceAsyncStub

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def build_components(
    settings: ServiceSettings,
    database: Database,
    connector: TemporalConnector,
    *,
    journey_task_queue: str = JOURNEY_TASK_QUEUE,
) -> SectorComponents:
    """`journey_task_queue` is for tests only (a stand-in journey on its own
    queue); the service always starts journeys on `masar-journey`."""
    starter = JourneyStarter(database, connector, task_queue=journey_task_queue)
    outbox = IntakeOutbox(database, connector, starter=starter)
    desk = CaseDesk(database, outbox, starter)
    # The activities call this very service through its gRPC API.
    channel = grpc.aio.insecure_channel(settings.addr)
    stub = cast("IntakeServiceAsyncStub", IntakeServiceStub(channel))
    activities = IntakeActivities(stub)
    return SectorComponents(
        grpc_services=[
            GrpcService(SERVICE_NAME, IntakeServicer(desk), add_IntakeServiceServicer_to_server)
        ],
        activities=[activities.record_escalation],
        outbox=outbox,
        closers=[channel.close],
    )
