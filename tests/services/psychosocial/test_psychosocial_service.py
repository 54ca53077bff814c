"""The psychosocial service through a real gRPC server and a real database
(SQLite and PostgreSQL). Temporal is unreachable here, so the steps the
journey hears of come back QUEUED; test_psychosocial_journey.py delivers them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from masar.platform.identity import Role
from masar.v1 import common_pb2, psychosocial_pb2, psychosocial_pb2_grpc
from services.psychosocial.app import MIGRATIONS_DIR, build_components
from tests.services.harness import RunningSector, error_field, running_sector, sector_settings
from tests.services.psychosocial.helpers import (
    ATTENDED,
    CASA,
    COUNSELLING,
    FES,
    GROUP,
    MISSED,
    ORG,
    SOCIAL,
    accepted_referral,
    create_provider,
    days_ago,
    decide,
    key,
    provider_request,
    session,
    stub_of,
    support_request,
    ts,
)

QUEUED = common_pb2.DELIVERY_STATE_QUEUED
UNSPECIFIED = common_pb2.DELIVERY_STATE_UNSPECIFIED
G = psychosocial_pb2


@pytest.fixture
async def psychosocial(tmp_path, database_url) -> AsyncIterator[RunningSector]:
    settings = sector_settings("psychosocial", tmp_path, database_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def test_providers_sessions_and_the_support_plan(psychosocial) -> None:
    stub = stub_of(psychosocial)
    request = provider_request()
    provider = (await stub.CreateSupportProvider(request)).provider
    assert (await stub.CreateSupportProvider(request)).provider == provider
    assert provider.provider_id.startswith("psp-") and provider.organisation_id == ORG
    groups = await create_provider(stub, kinds=[GROUP], languages=["zgh"])
    casa = await create_provider(stub, region=CASA)
    listed = await stub.ListSupportProviders(G.ListSupportProvidersRequest(region=FES))
    assert {p.provider_id for p in listed.providers} == {provider.provider_id, groups.provider_id}
    by_kind = await stub.ListSupportProviders(G.ListSupportProvidersRequest(kind=SOCIAL))
    assert {p.provider_id for p in by_kind.providers} == {provider.provider_id, casa.provider_id}

    wanted = support_request(support=[COUNSELLING], languages=["ary"])
    referral = (await stub.RequestSupport(wanted)).referral
    assert (await stub.RequestSupport(wanted)).referral == referral
    assert referral.provider_id == provider.provider_id
    assert referral.sector == common_pb2.SECTOR_PSYCHOSOCIAL
    assert referral.referral_id.startswith("psy-")
    assert (
        await stub.RequestSupport(support_request(support=[GROUP]))
    ).referral.provider_id == groups.provider_id
    rid = referral.referral_id

    # Nothing before the provider accepts.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordSession(session(rid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await decide(stub, rid)

    # A missed session stays here; the first attended one starts the support.
    missed = await stub.RecordSession(session(rid, attendance=MISSED, held_at=days_ago(7)))
    assert missed.delivery == UNSPECIFIED
    assert missed.file.referral.status == common_pb2.REFERRAL_STATUS_ACCEPTED
    first = session(rid, held_at=days_ago(3), idem="first-session")
    started = await stub.RecordSession(first)
    assert started.delivery == QUEUED
    assert started.file.referral.status == common_pb2.REFERRAL_STATUS_IN_SERVICE
    again = await stub.RecordSession(first)  # a retry: the same answer, no second session
    assert len(again.file.sessions) == 2
    later = await stub.RecordSession(session(rid, held_at=days_ago(1)))
    assert later.delivery == UNSPECIFIED
    assert [(s.attendance) for s in later.file.sessions] == [MISSED, ATTENDED, ATTENDED]

    # The plan, and reviews at follow-ups.
    plan = await stub.SetSupportPlan(
        G.SetSupportPlanRequest(
            referral_id=rid,
            goals=[G.SUPPORT_GOAL_SAFETY_PLANNING, G.SUPPORT_GOAL_SELF_ESTEEM],
            idempotency_key=key(),
        )
    )
    assert [(g.goal, g.progress) for g in plan.file.plan] == [
        (G.SUPPORT_GOAL_SAFETY_PLANNING, G.GOAL_PROGRESS_NOT_STARTED),
        (G.SUPPORT_GOAL_SELF_ESTEEM, G.GOAL_PROGRESS_NOT_STARTED),
    ]
    reviewed = await stub.ReviewSupportPlan(
        G.ReviewSupportPlanRequest(
            referral_id=rid,
            reviewed_at=ts(days_ago(0.5)),
            reviews=[
                G.GoalReview(goal=G.SUPPORT_GOAL_SAFETY_PLANNING, progress=G.GOAL_PROGRESS_ACHIEVED)
            ],
            idempotency_key=key(),
        )
    )
    assert reviewed.file.plan[0].progress == G.GOAL_PROGRESS_ACHIEVED
    assert reviewed.file.plan[0].HasField("reviewed_at")
    assert reviewed.file.HasField("plan_reviewed_at")
    # A new plan keeps the progress of the goals it keeps.
    replanned = await stub.SetSupportPlan(
        G.SetSupportPlanRequest(
            referral_id=rid,
            goals=[G.SUPPORT_GOAL_SAFETY_PLANNING, G.SUPPORT_GOAL_HOUSING],
            idempotency_key=key(),
        )
    )
    assert [(g.goal, g.progress) for g in replanned.file.plan] == [
        (G.SUPPORT_GOAL_SAFETY_PLANNING, G.GOAL_PROGRESS_ACHIEVED),
        (G.SUPPORT_GOAL_HOUSING, G.GOAL_PROGRESS_NOT_STARTED),
    ]

    audited = psychosocial.count("audit_log")
    file = (await stub.GetSupportFile(G.GetSupportFileRequest(referral_id=rid))).file
    assert psychosocial.count("audit_log") == audited + 1
    assert list(file.support) == [COUNSELLING]

    done = await stub.CompleteSupport(
        G.CompleteSupportRequest(
            referral_id=rid, outcome=G.SUPPORT_OUTCOME_GOALS_MET, idempotency_key=key()
        )
    )
    assert done.delivery == QUEUED
    assert done.file.referral.status == common_pb2.REFERRAL_STATUS_COMPLETED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RecordSession(session(rid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    purged = await stub.PurgeCase(
        common_pb2.PurgeCaseRequest(case_id=referral.case_id, idempotency_key=key())
    )
    assert (purged.referrals_withdrawn, purged.records_purged) == (0, 1)
    assert (
        psychosocial.scalar("SELECT support FROM referrals WHERE referral_id = :r", r=rid) is None
    )


async def test_bad_input_names_the_field_and_writes_nothing(psychosocial) -> None:
    stub = stub_of(psychosocial)
    await create_provider(stub)
    pending = (await stub.RequestSupport(support_request())).referral
    rid = await accepted_referral(stub)
    await stub.SetSupportPlan(
        G.SetSupportPlanRequest(
            referral_id=rid, goals=[G.SUPPORT_GOAL_INCOME], idempotency_key=key()
        )
    )
    tables = ("support_providers", "referrals", "outbox", "idempotency_keys")
    counts = {t: psychosocial.count(t) for t in tables}
    plan = psychosocial.scalar("SELECT plan FROM referrals WHERE referral_id = :r", r=rid)
    secret = "Khadija Benali"

    def provider_with(**changes):
        request = provider_request()
        for name, value in changes.items():
            if isinstance(value, list):
                del getattr(request, name)[:]
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        return request

    def support_with(**changes):
        request = support_request()
        for name, value in changes.items():
            if name == "needs_languages":
                request.needs.languages.append(value)
            elif name == "needs_support":
                request.needs.support.append(value)
            else:
                setattr(request, name, value)
        return request

    def session_without_time():
        request = session(rid)
        request.ClearField("held_at")
        return request

    def review(*reviews, at=None):
        return G.ReviewSupportPlanRequest(
            referral_id=rid,
            reviewed_at=ts(at or days_ago(1)),
            reviews=[G.GoalReview(goal=g, progress=p) for g, p in reviews],
            idempotency_key=key(),
        )

    bad = [
        (stub.CreateSupportProvider, provider_with(kinds=[]), "kinds"),
        (stub.CreateSupportProvider, provider_with(kinds=[0]), "kinds"),
        (stub.CreateSupportProvider, provider_with(region=secret), "region"),
        (stub.CreateSupportProvider, provider_with(name=""), "name"),
        (stub.CreateSupportProvider, provider_with(languages=[secret]), "languages"),
        (stub.CreateSupportProvider, provider_with(organisation_id=secret), "organisation_id"),
        (
            stub.ListSupportProviders,
            G.ListSupportProvidersRequest(kind=G.SupportKind.ValueType(99)),
            "kind",
        ),
        (stub.RequestSupport, support_with(case_id=secret), "case_id"),
        (stub.RequestSupport, support_with(risk=0), "risk"),
        (stub.RequestSupport, support_with(needs_support=0), "needs.support"),
        (stub.RequestSupport, support_with(needs_languages=secret), "needs.languages"),
        (stub.RecordSession, session(rid, attendance=0), "attendance"),
        (stub.RecordSession, session_without_time(), "held_at"),
        (stub.RecordSession, session(rid, held_at=days_ago(-1)), "held_at"),
        (stub.RecordSession, session(rid, idem=""), "idempotency_key"),
        (stub.RecordSession, session("hlt-0123456789abcdef"), "referral_id"),
        (
            stub.SetSupportPlan,
            G.SetSupportPlanRequest(referral_id=rid, goals=[], idempotency_key=key()),
            "goals",
        ),
        (
            stub.SetSupportPlan,
            G.SetSupportPlanRequest(
                referral_id=rid,
                goals=[G.SUPPORT_GOAL_INCOME, G.SUPPORT_GOAL_INCOME],
                idempotency_key=key(),
            ),
            "goals",
        ),
        (
            stub.SetSupportPlan,
            G.SetSupportPlanRequest(
                referral_id=rid, goals=[G.SUPPORT_GOAL_UNSPECIFIED], idempotency_key=key()
            ),
            "goals",
        ),
        (stub.ReviewSupportPlan, review(), "reviews"),
        (
            stub.ReviewSupportPlan,
            review((G.SUPPORT_GOAL_HOUSING, G.GOAL_PROGRESS_ACHIEVED)),
            "reviews.goal",
        ),
        (stub.ReviewSupportPlan, review((G.SUPPORT_GOAL_INCOME, 0)), "reviews.progress"),
        (
            stub.ReviewSupportPlan,
            review((G.SUPPORT_GOAL_INCOME, G.GOAL_PROGRESS_ACHIEVED), at=days_ago(-2)),
            "reviewed_at",
        ),
        (
            stub.CompleteSupport,
            G.CompleteSupportRequest(referral_id=pending.referral_id, idempotency_key=key()),
            "outcome",
        ),
        (
            stub.PurgeCase,
            common_pb2.PurgeCaseRequest(case_id=pending.case_id),
            "idempotency_key",
        ),
    ]
    for rpc, request, field in bad:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rpc(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert error_field(err.value) == field, field
        assert secret not in (err.value.details() or "")
    assert {t: psychosocial.count(t) for t in tables} == counts
    assert psychosocial.scalar("SELECT plan FROM referrals WHERE referral_id = :r", r=rid) == plan


async def test_only_the_providers_staff_record_sessions(psychosocial) -> None:
    stub = stub_of(psychosocial)
    await create_provider(stub)
    rid = await accepted_referral(stub)
    for role, org, region in [
        (Role.PSYCHOSOCIAL_STAFF, "org-another-association", ""),
        (Role.HEALTH_STAFF, ORG, ""),
        (Role.COORDINATOR, "", FES),
    ]:
        other = psychosocial_pb2_grpc.PsychosocialServiceStub(
            psychosocial.channel_as(role, org, region)
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await other.RecordSession(session(rid))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, role
    assert (
        psychosocial.scalar("SELECT sessions FROM referrals WHERE referral_id = :r", r=rid) is None
    )
