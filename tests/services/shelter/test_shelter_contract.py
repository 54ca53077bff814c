"""The contract between the shelter and the REAL journey: the shelter service
(real gRPC server, real database, its activity worker on masar-shelter) and
workflows.journey.SurvivorJourney (run by the journey worker on a Temporal
dev server of the test's own). The journey requests a placement, staff accept
it through the shelter's gRPC API, and the journey's status shows it
ACCEPTED. Intake does not run: consent proofs come from a stand-in."""

from __future__ import annotations

import functools
import secrets

import grpc
import grpc.aio
import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from masar import contract
from masar.contract import JourneyInput, Need, Reassignment, ReferralStatus, Risk, Sector
from masar.platform.clock import utcnow
from masar.v1 import common_pb2, shelter_pb2_grpc
from services.shelter.app import MIGRATIONS_DIR, build_components
from tests.services.harness import real_journey, running_sector, sector_settings
from tests.services.shelter.helpers import FES, create_shelter, decide, placement
from tests.support_assertions import as_coordinator
from tests.support_auth import GrantingConsent

consenting = functools.partial(build_components, consent=GrantingConsent())


async def test_the_real_journey_refers_and_hears_the_shelter_accept(tmp_path, sqlite_url) -> None:
    async with real_journey() as journeys:
        settings = sector_settings(
            "shelter", tmp_path, sqlite_url, temporal_address=journeys.address
        )
        async with running_sector(settings, consenting, MIGRATIONS_DIR, run_worker=True) as shelter:
            stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
            home = await create_shelter(stub, capacity=4)
            case_id = contract.new_case_id()
            journey = await journeys.start(
                JourneyInput(
                    case_id=case_id,
                    region=FES,
                    risk=Risk.HIGH,
                    needs=[Need.SHELTER],
                    consents=[Sector.SHELTER],
                    opened_at=utcnow(),
                    shelter=contract.ShelterNeeds(household_size=2, children=1),
                )
            )
            status = await journeys.until(journey, lambda s: bool(s.referrals))
            (referral,) = status.referrals
            assert (referral.sector, referral.provider_id) == (Sector.SHELTER, home.shelter_id)
            assert referral.status is ReferralStatus.PENDING

            # A coordinator names a shelter that does not exist: the shelter refuses.
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await journey.execute_update(
                    contract.UPDATE_REASSIGN,
                    as_coordinator(
                        contract.UPDATE_REASSIGN,
                        case_id,
                        Reassignment(
                            event_id=secrets.token_hex(8),
                            referral_id=referral.referral_id,
                            provider_id="shl-000000000000",
                            coordinator_id="coordinator-1",
                            reason="test",
                        ),
                        region=FES,
                    ),
                )
            assert isinstance(err.value.cause, ApplicationError)
            assert err.value.cause.type == contract.ERR_NO_PROVIDER
            # ... and says why, naming the field (the journey keeps only the type).
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.RequestPlacement(placement(provider_id="shl-000000000000"))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (refused.value.details() or "").startswith("provider_id: unknown shelter")

            accepted = await decide(stub, referral.referral_id)
            assert accepted.delivery == common_pb2.DELIVERY_STATE_DELIVERED
            status = await journeys.until(
                journey,
                lambda s: any(r.status is ReferralStatus.ACCEPTED for r in s.referrals),
            )
            (seen,) = [r for r in status.referrals if r.referral_id == referral.referral_id]
            assert seen.status is ReferralStatus.ACCEPTED
            await journey.terminate("test over")
