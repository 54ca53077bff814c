"""The legal aid service through a real gRPC server and a real database
(SQLite and PostgreSQL). Temporal is unreachable here, so staff decisions and
milestones come back QUEUED (kept in the outbox)."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from masar.v1 import common_pb2, legal_pb2
from services.legal.app import MIGRATIONS_DIR, build_components
from tests.services.harness import error_field, running_sector, sector_settings
from tests.services.legal.helpers import (
    CARE_CELL,
    COMPLAINT,
    FAMILY,
    FES,
    LAWYER,
    ORG,
    ORIENTAL,
    PROTECTION,
    RABAT,
    RESIDENCY,
    TRAFFICKING,
    ago,
    ahead,
    aid_request,
    case_id,
    create_provider,
    decide,
    first_meeting,
    key,
    provider_request,
    raw,
    stub_of,
)

QUEUED = common_pb2.DELIVERY_STATE_QUEUED
ORDER = legal_pb2.ProtectionOrderStatus
HEARING = legal_pb2.HearingStatus
NO_CONTACT = legal_pb2.PROTECTION_MEASURE_NO_CONTACT_DURING_PROSECUTION
BAN = legal_pb2.PROTECTION_MEASURE_CONTACT_BAN_AFTER_CONVICTION


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_health_and_reflection_are_reachable(tmp_path, sqlite_url) -> None:
    settings = sector_settings("legal", tmp_path, sqlite_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        health = health_pb2_grpc.HealthStub(running.channel)
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service="masar.v1.LegalAidService")
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(running.channel)
        names: list[str] = []
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflection.ServerReflectionInfo(iter([request])):
            names = [s.name for s in answer.list_services_response.service]
        assert "masar.v1.LegalAidService" in names
        symbol = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="masar.v1.LegalAidService"
        )
        async for answer in reflection.ServerReflectionInfo(iter([symbol])):
            assert answer.file_descriptor_response.file_descriptor_proto


async def test_providers_are_created_once_and_listed(legal) -> None:
    stub = stub_of(legal)
    request = provider_request(
        name="Cellule de prise en charge, TPI Fès",
        kind=CARE_CELL,
        languages=["ARY", "ar", "ary"],
        matters=[COMPLAINT, PROTECTION, COMPLAINT],
    )
    first = (await stub.CreateProvider(request)).provider
    again = (await stub.CreateProvider(request)).provider
    assert again == first
    assert legal.count("providers") == 1
    assert first.provider_id.startswith("lgp-")
    assert list(first.languages) == ["ar", "ary"]
    assert list(first.matters) == [PROTECTION, COMPLAINT]
    assert first.kind == CARE_CELL and first.region == FES and first.open_referrals == 0
    assert first.organisation_id == ORG

    # The same key for a different provider is refused, naming the key.
    request.region = RABAT
    err = await rpc_error(stub.CreateProvider(request))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_field(err) == "idempotency_key"
    assert legal.count("providers") == 1

    lawyer = await create_provider(
        stub, region=RABAT, kind=LAWYER, languages=["fr"], matters=[FAMILY, RESIDENCY]
    )
    tamazight = await create_provider(
        stub, region=ORIENTAL, languages=["zgh"], matters=[TRAFFICKING]
    )

    async def ids(**filters) -> set[str]:
        reply = await stub.ListProviders(legal_pb2.ListLegalProvidersRequest(**filters))
        return {p.provider_id for p in reply.providers}

    everyone = {first.provider_id, lawyer.provider_id, tamazight.provider_id}
    assert await ids() == everyone
    assert await ids(region=RABAT) == {lawyer.provider_id}
    assert await ids(matter=TRAFFICKING) == {tamazight.provider_id}
    assert await ids(language="ZGH") == {tamazight.provider_id}
    assert await ids(kind=CARE_CELL) == {first.provider_id}
    assert await ids(region=FES, matter=FAMILY) == set()

    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListProviders(
            legal_pb2.ListLegalProvidersRequest(page_size=2, page_token=token)
        )
        assert len(page.providers) <= 2
        seen += [p.provider_id for p in page.providers]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(everyone) and len(seen) == 3


async def test_bad_input_names_the_field_and_writes_nothing(legal) -> None:
    stub = stub_of(legal)
    provider = await create_provider(stub)
    pending = (await stub.RequestLegalAid(aid_request())).referral
    accepted = (await stub.RequestLegalAid(aid_request(matters=[PROTECTION, COMPLAINT]))).referral
    await decide(stub, accepted.referral_id)
    await first_meeting(stub, accepted.referral_id)
    tables = ("providers", "referrals", "protection_orders", "hearings", "outbox")
    counts = {t: legal.count(t) for t in (*tables, "idempotency_keys")}
    secret = "Fatima Zahra 0612345678"
    rid = accepted.referral_id

    def with_(request, **changes):
        for name, value in changes.items():
            target = request
            *path, leaf = name.split("__")
            for part in path:
                target = getattr(target, part)
            if isinstance(value, list):
                del getattr(target, leaf)[:]
                getattr(target, leaf).extend(value)
            elif hasattr(value, "CopyFrom"):
                getattr(target, leaf).CopyFrom(value)
            else:
                setattr(target, leaf, value)
        return request

    def order(**changes):
        request = legal_pb2.RecordProtectionOrderRequest(
            referral_id=rid,
            measure=NO_CONTACT,
            status=ORDER.PROTECTION_ORDER_STATUS_REQUESTED,
            at=ago(hours=2),
            idempotency_key=key(),
        )
        return with_(request, **changes)

    def hearing(**changes):
        request = legal_pb2.RecordHearingRequest(
            referral_id=rid,
            matter=COMPLAINT,
            court=legal_pb2.COURT_LEVEL_FIRST_INSTANCE,
            kind=legal_pb2.HEARING_KIND_TRIAL,
            scheduled_at=ahead(days=10),
            idempotency_key=key(),
        )
        return with_(request, **changes)

    def close(**changes):
        request = legal_pb2.CloseMatterRequest(
            referral_id=rid,
            matter=PROTECTION,
            outcome=legal_pb2.MATTER_OUTCOME_RELIEF_GRANTED,
            closed_at=ago(minutes=1),
            idempotency_key=key(),
        )
        return with_(request, **changes)

    bad = [
        (stub.CreateProvider, provider_request(region=secret), "region"),
        (stub.CreateProvider, provider_request(name=""), "name"),
        (stub.CreateProvider, provider_request(name="x" * 201), "name"),
        (stub.CreateProvider, with_(provider_request(), kind=0), "kind"),
        (stub.CreateProvider, with_(provider_request(), kind=42), "kind"),
        (stub.CreateProvider, provider_request(languages=[]), "languages"),
        (stub.CreateProvider, provider_request(languages=["fr", secret]), "languages[1]"),
        (stub.CreateProvider, provider_request(matters=[]), "matters"),
        (stub.CreateProvider, provider_request(matters=[PROTECTION, 0]), "matters[1]"),
        (stub.CreateProvider, provider_request(matters=[77]), "matters[0]"),
        (stub.CreateProvider, with_(provider_request(), idempotency_key=""), "idempotency_key"),
        (stub.CreateProvider, provider_request(organisation=""), "organisation_id"),
        (stub.CreateProvider, provider_request(organisation=secret), "organisation_id"),
        (stub.ListProviders, legal_pb2.ListLegalProvidersRequest(region="atlantis"), "region"),
        (stub.ListProviders, legal_pb2.ListLegalProvidersRequest(language=secret), "language"),
        (stub.ListProviders, legal_pb2.ListLegalProvidersRequest(matter=raw(99)), "matter"),
        (stub.ListProviders, legal_pb2.ListLegalProvidersRequest(page_size=501), "page_size"),
        (stub.ListProviders, legal_pb2.ListLegalProvidersRequest(page_token="%%"), "page_token"),
        (stub.RequestLegalAid, aid_request(case=secret), "case_id"),
        (stub.RequestLegalAid, aid_request(region=""), "region"),
        (stub.RequestLegalAid, aid_request(risk=0), "risk"),
        (stub.RequestLegalAid, aid_request(risk=9), "risk"),
        (stub.RequestLegalAid, aid_request(matters=[]), "needs.matters"),
        (stub.RequestLegalAid, aid_request(matters=[PROTECTION, 0]), "needs.matters[1]"),
        (stub.RequestLegalAid, aid_request(languages=["fr", "??"]), "needs.languages[1]"),
        (stub.RequestLegalAid, aid_request(exclude=[secret]), "exclude_provider_ids"),
        (stub.RequestLegalAid, aid_request(provider_id="a b"), "provider_id"),
        (stub.RequestLegalAid, with_(aid_request(), idempotency_key=""), "idempotency_key"),
        (stub.RequestLegalAid, with_(aid_request(), needs=legal_pb2.LegalNeeds()), "needs.matters"),
        (
            stub.RequestLegalAid,
            legal_pb2.RequestLegalAidRequest(
                case_id=case_id(), region=FES, risk=raw(1), idempotency_key=key()
            ),
            "needs",
        ),
        (
            stub.DecideReferral,
            common_pb2.DecideReferralRequest(
                referral_id=pending.referral_id, decision=raw(2), idempotency_key=key()
            ),
            "decline_reason",
        ),
        (
            stub.DecideReferral,
            common_pb2.DecideReferralRequest(
                referral_id="shr-0123456789abcdef", decision=raw(1), idempotency_key="k"
            ),
            "referral_id",
        ),
        (
            stub.RecordFirstMeeting,
            legal_pb2.RecordFirstMeetingRequest(referral_id=rid, idempotency_key="k"),
            "met_at",
        ),
        (
            stub.RecordFirstMeeting,
            legal_pb2.RecordFirstMeetingRequest(
                referral_id=rid, met_at=ahead(days=1), idempotency_key="k"
            ),
            "met_at",
        ),
        (stub.RecordProtectionOrder, order(referral_id=""), "referral_id"),
        (stub.RecordProtectionOrder, order(measure=0), "measure"),
        (stub.RecordProtectionOrder, order(measure=12), "measure"),
        (stub.RecordProtectionOrder, order(status=0), "status"),
        (stub.RecordProtectionOrder, order(status=ORDER.PROTECTION_ORDER_STATUS_DENIED), "status"),
        (stub.RecordProtectionOrder, order(at=ahead(days=2)), "at"),
        (stub.RecordProtectionOrder, order(order_id=secret), "order_id"),
        (stub.RecordProtectionOrder, order(effective_until=ahead(days=30)), "effective_until"),
        (stub.RecordProtectionOrder, order(idempotency_key=""), "idempotency_key"),
        (
            stub.RecordProtectionOrder,
            with_(legal_pb2.RecordProtectionOrderRequest(), referral_id=rid, status=1),
            "at",
        ),
        (stub.RecordHearing, hearing(matter=0), "matter"),
        (stub.RecordHearing, hearing(matter=FAMILY), "matter"),
        (stub.RecordHearing, hearing(court=0), "court"),
        (stub.RecordHearing, hearing(kind=0), "kind"),
        (stub.RecordHearing, hearing(kind=31), "kind"),
        (stub.RecordHearing, hearing(status=HEARING.HEARING_STATUS_CANCELLED), "status"),
        (stub.RecordHearing, hearing(status=HEARING.HEARING_STATUS_HELD), "scheduled_at"),
        (stub.RecordHearing, hearing(note="n" * 2001), "note"),
        (stub.RecordHearing, hearing(hearing_id=secret), "hearing_id"),
        (stub.RecordHearing, hearing(hearing_id="hr-0123456789abcdef"), "status"),
        (
            stub.RecordHearing,
            with_(legal_pb2.RecordHearingRequest(), referral_id=rid, idempotency_key="k"),
            "matter",
        ),
        (stub.CloseMatter, close(matter=0), "matter"),
        (stub.CloseMatter, close(matter=RESIDENCY), "matter"),
        (stub.CloseMatter, close(outcome=0), "outcome"),
        (stub.CloseMatter, close(closed_at=ahead(days=1)), "closed_at"),
        (stub.CloseMatter, close(idempotency_key=""), "idempotency_key"),
        (stub.GetLegalFile, legal_pb2.GetLegalFileRequest(referral_id=secret), "referral_id"),
        (stub.GetReferral, common_pb2.GetReferralRequest(), "referral_id"),
        (stub.ListReferrals, common_pb2.ListReferralsRequest(page_size=-1), "page_size"),
        (stub.ListReferrals, common_pb2.ListReferralsRequest(region=secret), "region"),
        (
            stub.RemindProvider,
            common_pb2.RemindProviderRequest(referral_id=rid),
            "idempotency_key",
        ),
        (
            stub.CloseReferral,
            common_pb2.CloseReferralRequest(
                referral_id=rid, status=common_pb2.REFERRAL_STATUS_COMPLETED, idempotency_key="k"
            ),
            "status",
        ),
        (
            stub.PurgeCase,
            common_pb2.PurgeCaseRequest(case_id=secret, idempotency_key="k"),
            "case_id",
        ),
    ]
    for rpc, request, field in bad:
        try:
            await rpc(request)
        except grpc.aio.AioRpcError as exc:
            err = exc
        else:
            raise AssertionError(f"accepted a bad {field}")
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_field(err) == field, (field, err.details())
        assert secret not in (err.details() or "")
    assert {t: legal.count(t) for t in counts} == counts

    missing = await rpc_error(
        stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id="leg-0123456789abcdef"))
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    gone = await rpc_error(stub.RecordHearing(hearing(hearing_id="hr-0123456789abcdef", status=2)))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert provider.provider_id


async def test_provider_is_chosen_by_region_language_and_matter(legal) -> None:
    stub = stub_of(legal)
    fes_fr = await create_provider(stub, region=FES, languages=["fr"])
    rabat_ary = await create_provider(stub, region=RABAT, languages=["ary"])
    fes_ary = await create_provider(stub, region=FES, languages=["ary", "zgh"])
    fes_traffic = await create_provider(
        stub, region=FES, languages=["ary"], matters=[TRAFFICKING, RESIDENCY]
    )

    async def chosen(**kwargs) -> str:
        return (await stub.RequestLegalAid(aid_request(**kwargs))).referral.provider_id

    # Her region and one of her languages first.
    assert await chosen(languages=["ary"]) == fes_ary.provider_id
    # Then the same region's provider with fewer open referrals ...
    assert await chosen(languages=[]) == fes_fr.provider_id
    # ... another region rather than a language she does not speak.
    assert await chosen(exclude=[fes_ary.provider_id]) == rabat_ary.provider_id
    # Every requested matter must be taken.
    assert await chosen(matters=[TRAFFICKING, RESIDENCY]) == fes_traffic.provider_id
    # A coordinator may name a provider, even in another region or one tried before ...
    assert await chosen(provider_id=fes_fr.provider_id) == fes_fr.provider_id
    assert (
        await chosen(provider_id=rabat_ary.provider_id, exclude=[rabat_ary.provider_id])
        == rabat_ary.provider_id
    )

    err = await rpc_error(stub.RequestLegalAid(aid_request(languages=["en"])))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = await rpc_error(stub.RequestLegalAid(aid_request(matters=[TRAFFICKING, FAMILY])))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = await rpc_error(stub.RequestLegalAid(aid_request(provider_id="lgp-000000000000")))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # ... but not one who does not take her matters.
    err = await rpc_error(stub.RequestLegalAid(aid_request(provider_id=fes_traffic.provider_id)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert legal.count("referrals") == 6

    listed = await stub.ListProviders(legal_pb2.ListLegalProvidersRequest(region=FES))
    counts = {p.provider_id: p.open_referrals for p in listed.providers}
    assert counts[fes_ary.provider_id] == 1 and counts[fes_fr.provider_id] == 2


async def test_legal_aid_is_requested_decided_and_lived(legal) -> None:
    stub = stub_of(legal)
    provider = await create_provider(stub, matters=[PROTECTION, COMPLAINT, FAMILY])
    case = case_id()
    request = aid_request(case=case, matters=[PROTECTION, COMPLAINT], languages=["ary", "fr"])
    created = await stub.RequestLegalAid(request)
    again = await stub.RequestLegalAid(request)
    referral = created.referral
    assert again.referral == referral
    assert legal.count("referrals") == 1
    assert referral.referral_id.startswith("leg-")
    assert referral.status == common_pb2.REFERRAL_STATUS_PENDING
    assert referral.sector == common_pb2.SECTOR_LEGAL
    assert referral.provider_id == provider.provider_id and referral.case_id == case
    assert referral.organisation_id == provider.organisation_id == ORG
    assert [(m.matter, m.status) for m in created.matters] == [
        (PROTECTION, legal_pb2.MATTER_STATUS_OPEN),
        (COMPLAINT, legal_pb2.MATTER_STATUS_OPEN),
    ]
    rid = referral.referral_id

    # Nothing is recorded on a referral the provider has not accepted.
    err = await rpc_error(first_meeting(stub, rid))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    err = await rpc_error(
        stub.RecordProtectionOrder(
            legal_pb2.RecordProtectionOrderRequest(
                referral_id=rid,
                measure=NO_CONTACT,
                status=ORDER.PROTECTION_ORDER_STATUS_REQUESTED,
                at=ago(hours=1),
                idempotency_key=key(),
            )
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION

    accept_key = key()
    decision = await decide(stub, rid, idem=accept_key)
    assert decision.delivery == QUEUED
    assert decision.referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED
    assert (await decide(stub, rid, idem=accept_key)).referral == decision.referral
    err = await rpc_error(decide(stub, rid, accept=False, reason=1))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION

    meeting_key = key()
    meeting = await stub.RecordFirstMeeting(
        legal_pb2.RecordFirstMeetingRequest(
            referral_id=rid, met_at=ago(hours=3), idempotency_key=meeting_key
        )
    )
    assert meeting.delivery == QUEUED
    assert meeting.referral.status == common_pb2.REFERRAL_STATUS_IN_SERVICE

    # A no-contact order during the prosecution (art. 88-3): requested, granted, breached twice.
    order_key = key()
    requested = legal_pb2.RecordProtectionOrderRequest(
        referral_id=rid,
        measure=NO_CONTACT,
        status=ORDER.PROTECTION_ORDER_STATUS_REQUESTED,
        at=ago(hours=2),
        idempotency_key=order_key,
    )
    order = (await stub.RecordProtectionOrder(requested)).order
    assert (await stub.RecordProtectionOrder(requested)).order == order
    assert legal.count("protection_orders") == 1
    assert order.order_id.startswith("po-") and order.measure == NO_CONTACT
    assert order.status == ORDER.PROTECTION_ORDER_STATUS_REQUESTED

    def step(status, at, **extra):
        return stub.RecordProtectionOrder(
            legal_pb2.RecordProtectionOrderRequest(
                referral_id=rid,
                order_id=order.order_id,
                status=status,
                at=at,
                idempotency_key=key(),
                **extra,
            )
        )

    err = await rpc_error(step(ORDER.PROTECTION_ORDER_STATUS_BREACHED, ago(hours=1)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION  # not granted yet
    err = await rpc_error(step(ORDER.PROTECTION_ORDER_STATUS_GRANTED, ago(hours=3)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_field(err) == "at"
    granted = (
        await step(
            ORDER.PROTECTION_ORDER_STATUS_GRANTED, ago(hours=1), effective_until=ahead(days=90)
        )
    ).order
    assert granted.status == ORDER.PROTECTION_ORDER_STATUS_GRANTED
    assert granted.HasField("decided_at") and granted.HasField("effective_until")
    await step(ORDER.PROTECTION_ORDER_STATUS_BREACHED, ago(minutes=30))
    breached = (await step(ORDER.PROTECTION_ORDER_STATUS_BREACHED, ago(minutes=10))).order
    assert breached.status == ORDER.PROTECTION_ORDER_STATUS_BREACHED and breached.breaches == 2
    err = await rpc_error(step(ORDER.PROTECTION_ORDER_STATUS_DENIED, ago(minutes=5)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION

    # A trial hearing, adjourned once, then held; with the lawyer's note.
    hearing_request = legal_pb2.RecordHearingRequest(
        referral_id=rid,
        matter=COMPLAINT,
        court=legal_pb2.COURT_LEVEL_FIRST_INSTANCE,
        kind=legal_pb2.HEARING_KIND_TRIAL,
        scheduled_at=ago(days=2),
        note="bring the medical certificate",
        idempotency_key=key(),
    )
    hearing = (await stub.RecordHearing(hearing_request)).hearing
    assert hearing.status == HEARING.HEARING_STATUS_SCHEDULED and hearing.hearing_id.startswith(
        "hr-"
    )
    assert (await stub.RecordHearing(hearing_request)).hearing.hearing_id == hearing.hearing_id
    adjourned = (
        await stub.RecordHearing(
            legal_pb2.RecordHearingRequest(
                referral_id=rid,
                hearing_id=hearing.hearing_id,
                status=HEARING.HEARING_STATUS_ADJOURNED,
                scheduled_at=ago(days=1),
                idempotency_key=key(),
            )
        )
    ).hearing
    assert adjourned.status == HEARING.HEARING_STATUS_ADJOURNED
    assert adjourned.note == "bring the medical certificate"
    held = (
        await stub.RecordHearing(
            legal_pb2.RecordHearingRequest(
                referral_id=rid,
                hearing_id=hearing.hearing_id,
                status=HEARING.HEARING_STATUS_HELD,
                idempotency_key=key(),
            )
        )
    ).hearing
    assert held.status == HEARING.HEARING_STATUS_HELD
    err = await rpc_error(
        stub.RecordHearing(
            legal_pb2.RecordHearingRequest(
                referral_id=rid,
                hearing_id=hearing.hearing_id,
                status=HEARING.HEARING_STATUS_CANCELLED,
                idempotency_key=key(),
            )
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert legal.count("hearings") == 1
    # The note is ciphertext at rest.
    stored = legal.scalar("SELECT note FROM hearings")
    assert stored.startswith("enc1:") and "certificate" not in stored
    assert "ary" not in legal.scalar("SELECT languages FROM referrals")

    # Closing one matter leaves the referral in service; closing the last completes it.
    closed_at = ago(minutes=1)

    def close(matter, outcome, idem=None):
        return stub.CloseMatter(
            legal_pb2.CloseMatterRequest(
                referral_id=rid,
                matter=matter,
                outcome=outcome,
                closed_at=closed_at,
                idempotency_key=idem or key(),
            )
        )

    close_key = key()
    first = await close(PROTECTION, legal_pb2.MATTER_OUTCOME_RELIEF_GRANTED, close_key)
    assert first.referral.status == common_pb2.REFERRAL_STATUS_IN_SERVICE
    assert first.delivery == common_pb2.DELIVERY_STATE_UNSPECIFIED
    assert first.matter.status == legal_pb2.MATTER_STATUS_CLOSED
    assert first.matter.outcome == legal_pb2.MATTER_OUTCOME_RELIEF_GRANTED
    assert (await close(PROTECTION, legal_pb2.MATTER_OUTCOME_RELIEF_GRANTED, close_key)) == first
    err = await rpc_error(close(PROTECTION, legal_pb2.MATTER_OUTCOME_SETTLED))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION

    last_key = key()
    last = await close(COMPLAINT, legal_pb2.MATTER_OUTCOME_CONVICTION, last_key)
    assert last.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    assert last.delivery == QUEUED
    assert last.matter.outcome == legal_pb2.MATTER_OUTCOME_CONVICTION
    replay = await close(COMPLAINT, legal_pb2.MATTER_OUTCOME_CONVICTION, last_key)
    assert replay.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    # Two staff actions, the two breaches and the completion wait in the outbox
    # for the journey.
    assert legal.count("outbox") == 5
    assert (
        legal.scalar("SELECT count(*) FROM outbox WHERE update_name = 'protection_order_breached'")
        == 2
    )
    assert legal.scalar("SELECT count(*) FROM outbox WHERE payload LIKE '%CONVICTION%'") == 1

    # A ban survives the closed file: its breaches are still recorded (art. 321-1).
    breach = (await step(ORDER.PROTECTION_ORDER_STATUS_BREACHED, ago(minutes=1))).order
    assert breach.breaches == 3
    err = await rpc_error(
        stub.RecordProtectionOrder(
            legal_pb2.RecordProtectionOrderRequest(
                referral_id=rid,
                measure=BAN,
                status=ORDER.PROTECTION_ORDER_STATUS_GRANTED,
                at=ago(minutes=1),
                idempotency_key=key(),
            )
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION  # new orders need an open file

    file = await stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=rid))
    assert file.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    assert list(file.languages) == ["ary", "fr"]
    assert file.HasField("first_meeting_at")
    assert [m.status for m in file.matters] == [legal_pb2.MATTER_STATUS_CLOSED] * 2
    assert [o.order_id for o in file.protection_orders] == [order.order_id]
    assert [h.status for h in file.hearings] == [HEARING.HEARING_STATUS_HELD]

    # A decline carries its structured reason.
    other = (await stub.RequestLegalAid(aid_request(case=case))).referral
    declined = await decide(
        stub, other.referral_id, accept=False, reason=common_pb2.DECLINE_REASON_CONFLICT_OF_INTEREST
    )
    assert declined.referral.status == common_pb2.REFERRAL_STATUS_DECLINED
    assert declined.referral.decline_reason == common_pb2.DECLINE_REASON_CONFLICT_OF_INTEREST

    got = await stub.GetReferral(common_pb2.GetReferralRequest(referral_id=rid))
    assert got.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    listed = await stub.ListReferrals(
        common_pb2.ListReferralsRequest(case_id=case, status=common_pb2.REFERRAL_STATUS_DECLINED)
    )
    assert [r.referral_id for r in listed.referrals] == [other.referral_id]
    by_provider = await stub.ListReferrals(
        common_pb2.ListReferralsRequest(provider_id=provider.provider_id, page_size=1)
    )
    assert len(by_provider.referrals) == 1 and by_provider.next_page_token


async def test_journey_steps_remind_close_and_purge(legal) -> None:
    stub = stub_of(legal)
    await create_provider(stub, matters=[PROTECTION, TRAFFICKING])
    case = case_id()
    pending = (await stub.RequestLegalAid(aid_request(case=case))).referral
    working = (
        await stub.RequestLegalAid(aid_request(case=case, matters=[TRAFFICKING, PROTECTION]))
    ).referral
    rerouted = (await stub.RequestLegalAid(aid_request(case=case))).referral
    await decide(stub, working.referral_id)
    await first_meeting(stub, working.referral_id)
    await stub.RecordProtectionOrder(
        legal_pb2.RecordProtectionOrderRequest(
            referral_id=working.referral_id,
            measure=NO_CONTACT,
            status=ORDER.PROTECTION_ORDER_STATUS_REQUESTED,
            at=ago(hours=1),
            idempotency_key=key(),
        )
    )
    await stub.RecordHearing(
        legal_pb2.RecordHearingRequest(
            referral_id=working.referral_id,
            matter=TRAFFICKING,
            court=legal_pb2.COURT_LEVEL_FIRST_INSTANCE,
            kind=legal_pb2.HEARING_KIND_INVESTIGATION,
            scheduled_at=ahead(days=3),
            note="prosecutor asked for the interpreter",
            idempotency_key=key(),
        )
    )

    remind_key = key()
    reminded = await stub.RemindProvider(
        common_pb2.RemindProviderRequest(
            referral_id=pending.referral_id, idempotency_key=remind_key
        )
    )
    assert reminded.referral.reminders == 1
    again = await stub.RemindProvider(
        common_pb2.RemindProviderRequest(
            referral_id=pending.referral_id, idempotency_key=remind_key
        )
    )
    assert again.referral.reminders == 1

    closed = await stub.CloseReferral(
        common_pb2.CloseReferralRequest(
            referral_id=rerouted.referral_id,
            status=common_pb2.REFERRAL_STATUS_REROUTED,
            idempotency_key=key(),
        )
    )
    assert closed.referral.status == common_pb2.REFERRAL_STATUS_REROUTED

    purge_key = key()
    purged = await stub.PurgeCase(
        common_pb2.PurgeCaseRequest(case_id=case, idempotency_key=purge_key)
    )
    assert purged.referrals_withdrawn == 2
    # Three referrals' matters and languages, one order, one hearing.
    assert purged.records_purged == 5
    repeat = await stub.PurgeCase(
        common_pb2.PurgeCaseRequest(case_id=case, idempotency_key=purge_key)
    )
    assert (repeat.referrals_withdrawn, repeat.records_purged) == (2, 5)
    assert legal.count("protection_orders") == 0 and legal.count("hearings") == 0
    assert legal.scalar("SELECT count(*) FROM referrals WHERE matters IS NOT NULL") == 0
    assert legal.scalar("SELECT count(*) FROM referrals WHERE languages IS NOT NULL") == 0

    file = await stub.GetLegalFile(legal_pb2.GetLegalFileRequest(referral_id=working.referral_id))
    assert file.referral.status == common_pb2.REFERRAL_STATUS_WITHDRAWN
    assert not file.matters and not file.languages and not file.protection_orders
    assert not file.hearings and not file.HasField("first_meeting_at")
    statuses = await stub.ListReferrals(common_pb2.ListReferralsRequest(case_id=case))
    assert sorted(common_pb2.ReferralStatus.Name(r.status) for r in statuses.referrals) == [
        "REFERRAL_STATUS_REROUTED",
        "REFERRAL_STATUS_WITHDRAWN",
        "REFERRAL_STATUS_WITHDRAWN",
    ]
    # Nothing more is recorded on a withdrawn referral.
    err = await rpc_error(decide(stub, pending.referral_id))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
