"""`masar case open` takes the care sectors (issue 15): the psychosocial need
beside the medical one, and consent to health care and to psychosocial
support; `masar providers` and `masar referral` know their sectors."""

from __future__ import annotations

import pytest

from masar import contract as c
from masar.cli import intake, providers, staff
from masar.cli.output import CliError
from masar.v1 import common_pb2, intake_pb2


def test_case_open_takes_the_care_needs_and_consents() -> None:
    needs = intake._split("medical, psychosocial", intake.SECTORS, "--needs")
    assert [intake.SECTORS[n] for n in needs] == [
        common_pb2.SECTOR_MEDICAL,
        common_pb2.SECTOR_PSYCHOSOCIAL,
    ]
    consents = intake._split("health,psychosocial", intake.CONSENTS, "--consent")
    assert [intake.CONSENTS[n] for n in consents] == [
        intake_pb2.CONSENT_SCOPE_HEALTH,
        intake_pb2.CONSENT_SCOPE_PSYCHOSOCIAL,
    ]
    with pytest.raises(CliError, match="--consent: unknown value"):
        intake._split("medical", intake.CONSENTS, "--consent")


def test_providers_and_staff_commands_know_the_care_sectors() -> None:
    assert {"health", "psychosocial"} <= set(providers.SECTORS)
    assert staff.sector_of("hlt-0123456789abcdef") is c.Sector.HEALTH
    assert staff.sector_of("psy-0123456789abcdef") is c.Sector.PSYCHOSOCIAL
    assert staff.OUTCOMES[c.Sector.HEALTH] == ["completed", "stopped", "transferred"]
    assert "goals_met" in staff.OUTCOMES[c.Sector.PSYCHOSOCIAL]
    referral = common_pb2.Referral(
        referral_id="hlt-0123456789abcdef", sector=common_pb2.SECTOR_MEDICAL
    )
    assert staff.referral_doc(referral)["sector"] == "health"
