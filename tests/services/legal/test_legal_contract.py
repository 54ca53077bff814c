"""The contract between legal aid and the REAL journey: the legal aid service
(real gRPC server, real database, its activity worker on masar-legal) and
workflows.journey.SurvivorJourney (run by the journey worker on a Temporal
dev server of the test's own). The journey requests legal aid, the provider
accepts through legal aid's gRPC API, and the journey's status shows it
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
from masar.v1 import common_pb2, legal_pb2_grpc
from services.legal.app import MIGRATIONS_DIR, build_components
from tests.services.harness import real_journey, running_sector, sector_settings
from tests.services.legal.helpers import FAMILY, FES, aid_request, create_provider, decide
from tests.support_assertions import as_coordinator
from tests.support_auth import GrantingConsent

consenting = functools.partial(build_components, consent=GrantingConsent())


async def test_the_real_journey_refers_and_hears_legal_aid_accept(tmp_path, sqlite_url) -> None:
    async with real_journey() as journeys:
        settings = sector_settings("legal", tmp_path, sqlite_url, temporal_address=journeys.address)
        async with running_sector(settings, consenting, MIGRATIONS_DIR, run_worker=True) as legal:
            stub = legal_pb2_grpc.LegalAidServiceStub(legal.channel)
            provider = await create_provider(stub)
            case_id = contract.new_case_id()
            journey = await journeys.start(
                JourneyInput(
                    case_id=case_id,
                    region=FES,
                    risk=Risk.HIGH,
                    needs=[Need.LEGAL],
                    consents=[Sector.LEGAL],
                    opened_at=utcnow(),
                    legal=contract.LegalNeeds(matters=["protection_order"], languages=["ary"]),
                )
            )
            status = await journeys.until(journey, lambda s: bool(s.referrals))
            (referral,) = status.referrals
            assert (referral.sector, referral.provider_id) == (Sector.LEGAL, provider.provider_id)
            assert referral.status is ReferralStatus.PENDING

            # A coordinator names a provider that does not exist: legal aid refuses.
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await journey.execute_update(
                    contract.UPDATE_REASSIGN,
                    as_coordinator(
                        contract.UPDATE_REASSIGN,
                        case_id,
                        Reassignment(
                            event_id=secrets.token_hex(8),
                            referral_id=referral.referral_id,
                            provider_id="lgp-000000000000",
                            coordinator_id="coordinator-1",
                            reason="test",
                        ),
                        region=FES,
                    ),
                )
            assert isinstance(err.value.cause, ApplicationError)
            assert err.value.cause.type == contract.ERR_NO_PROVIDER
            # ... and says why, naming the field (the journey keeps only the type).
            refusals = {
                "lgp-000000000000": "provider_id: unknown legal aid provider",
                (await create_provider(stub, matters=[FAMILY])).provider_id: (
                    "provider_id: not eligible: the provider does not take every matter"
                ),
            }
            for named, why in refusals.items():
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.RequestLegalAid(aid_request(provider_id=named))
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert (refused.value.details() or "").startswith(why)

            accepted = await decide(stub, referral.referral_id)
            assert accepted.delivery == common_pb2.DELIVERY_STATE_DELIVERED
            status = await journeys.until(
                journey,
                lambda s: any(r.status is ReferralStatus.ACCEPTED for r in s.referrals),
            )
            (seen,) = [r for r in status.referrals if r.referral_id == referral.referral_id]
            assert seen.status is ReferralStatus.ACCEPTED
            await journey.terminate("test over")
