"""Every clinical-window status the journey can report reaches readers of
the journey API as itself: a window she declined is never shown open."""

from __future__ import annotations

from masar.cli.journeys import sector_of
from masar.contract import Sector
from masar.v1 import common_pb2, journey_pb2
from services.intake.journey_servicer import WINDOW
from workflows.state import WindowStatus


def test_every_window_status_has_its_own_value_in_the_journey_api() -> None:
    values = [WINDOW[status.value] for status in WindowStatus]
    assert journey_pb2.CLINICAL_WINDOW_STATUS_UNSPECIFIED not in values
    assert len(set(values)) == len(values)
    assert WINDOW["DECLINED"] == journey_pb2.CLINICAL_WINDOW_STATUS_DECLINED


def test_a_medical_referral_reads_as_the_health_sector() -> None:
    assert sector_of(common_pb2.SECTOR_MEDICAL) is Sector.HEALTH
    assert sector_of(common_pb2.SECTOR_SHELTER) is Sector.SHELTER
