"""The sector staff's pages (console/pages/staff.py), in process.

The pages run in the real console app (httpx.ASGITransport) against the real
sector service (in-process gRPC server, SQLite; Temporal unreachable, so
decisions and milestones come back QUEUED), with a session signed in as the
sector's staff of one organisation (a test token of that role and
organisation, as sign-in would give). The network service is not running:
the inbox then shows no deadline, which is a case the pages must survive.
The deadline rules (read from the person's notifications) and the forms'
validation are unit-tested on their own functions.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.datastructures import FormData

from console import i18n
from console.app import build_app
from console.pages import care, forms, staff
from masar.platform.identity import Role
from masar.platform.settings import ConsoleSettings
from masar.v1 import (
    common_pb2,
    employment_pb2,
    employment_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    legal_pb2,
    legal_pb2_grpc,
    network_pb2,
    network_pb2_grpc,
    psychosocial_pb2,
    psychosocial_pb2_grpc,
    shelter_pb2,
    shelter_pb2_grpc,
)
from tests.conftest import free_port
from tests.services.harness import RunningSector, running_sector, sector_settings
from tests.support_auth import consent_proof, token_for

FES = "fes-meknes"
ORG = "org-0a5e00000001"
OTHER_ORG = "org-0a5e00000002"
PENDING = common_pb2.REFERRAL_STATUS_PENDING
ACCEPTED = common_pb2.REFERRAL_STATUS_ACCEPTED
IN_SERVICE = common_pb2.REFERRAL_STATUS_IN_SERVICE
COMPLETED = common_pb2.REFERRAL_STATUS_COMPLETED


def key() -> str:
    return secrets.token_hex(8)


def case_id() -> str:
    return secrets.token_hex(8)


# --- the console, signed in as staff ---------------------------------------------------


@dataclass
class Console:
    client: httpx.AsyncClient
    csrf: str

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path)

    async def post(self, path: str, **fields: str) -> httpx.Response:
        return await self.client.post(path, data={"csrf": self.csrf, **fields})


@asynccontextmanager
async def console_as(
    tmp_path: Path, role: str, organisation: str, addrs: dict[str, str], language: str = "en"
) -> AsyncIterator[Console]:
    env = {
        "MASAR_DATA_DIR": str(tmp_path),
        # Nothing listens there: the network service is down.
        "MASAR_NETWORK_ADDR": f"127.0.0.1:{free_port()}",
        **{f"MASAR_{name.upper()}_ADDR": addr for name, addr in addrs.items()},
    }
    app = build_app(ConsoleSettings.from_env(env))
    console = app.state.console
    session = console.sessions.new(language)
    session.role = role
    session.organisation_id = organisation
    session.region = FES
    session.username = "staff-test"
    session.account_id = "acc-test"
    session.access_token = token_for(Role(role), org=organisation, region=FES)
    session.access_expires_at = datetime.now(UTC) + timedelta(hours=1)
    session.refresh_token = "unused"
    session.refresh_expires_at = datetime.now(UTC) + timedelta(hours=8)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://console", cookies={"masar_session": session.sid}
    ) as client:
        try:
            yield Console(client, session.csrf)
        finally:
            await console.backend.close()


def group_of(page: str, referral_id: str) -> str | None:
    """The inbox group (data-group) whose table lists `referral_id`."""
    for match in re.finditer(r'<section class="card" data-group="(\w+)".*?</section>', page, re.S):
        if f'data-referral="{referral_id}"' in match.group(0):
            return match.group(1)
    return None


def assert_refused(response: httpx.Response, kind: str, status: int) -> None:
    assert response.status_code == status, response.text
    assert f'data-refusal="{kind}"' in response.text


def field_error(page: str, element_id: str) -> bool:
    return f'id="{element_id}-error"' in page and f'aria-describedby="{element_id}-error"' in page


async def status_of(stub: Any, referral_id: str) -> int:
    reply = await stub.GetReferral(common_pb2.GetReferralRequest(referral_id=referral_id))
    return int(reply.referral.status)


# --- shelter ---------------------------------------------------------------------------


@pytest.fixture
async def shelter(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningSector]:
    from services.shelter.app import MIGRATIONS_DIR, build_components

    settings = sector_settings("shelter", tmp_path, sqlite_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def make_shelter(stub: Any, name: str, organisation: str, capacity: int = 4) -> Any:
    reply = await stub.CreateShelter(
        shelter_pb2.CreateShelterRequest(
            name=name,
            region=FES,
            capacity=capacity,
            accepts_children=True,
            accessibility=[shelter_pb2.ACCESSIBILITY_FEATURE_WHEELCHAIR],
            address="confidential",
            idempotency_key=key(),
            organisation_id=organisation,
        )
    )
    return reply.shelter


async def place(stub: Any, shelter_id: str, household: int = 2) -> str:
    case = case_id()
    reply = await stub.RequestPlacement(
        shelter_pb2.RequestPlacementRequest(
            case_id=case,
            risk=common_pb2.RISK_LEVEL_CRITICAL,
            region=FES,
            needs=shelter_pb2.ShelterNeeds(household_size=household, children=household - 1),
            provider_id=shelter_id,
            idempotency_key=key(),
            consent_proof=consent_proof(case, "shelter"),
        )
    )
    return str(reply.referral.referral_id)


async def test_shelter_staff_work_a_referral_from_inbox_to_check_out(
    tmp_path: Path, shelter: RunningSector
) -> None:
    stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
    mine = await make_shelter(stub, "Dar Amane", ORG)
    theirs = await make_shelter(stub, "Dar Other", OTHER_ORG)
    referral = await place(stub, mine.shelter_id, household=3)
    elsewhere = await place(stub, theirs.shelter_id)

    async with console_as(tmp_path, "shelter_staff", ORG, {"shelter": shelter.address}) as web:
        # The inbox: my organisation's referral, new (no deadline known
        # without the network service); not the other organisation's.
        inbox = await web.get("/referrals")
        assert inbox.status_code == 200, inbox.text
        assert group_of(inbox.text, referral) == "new"
        assert elsewhere not in inbox.text
        assert "Dar Amane" in inbox.text and "Dar Other" not in inbox.text
        assert 'data-live="/referrals/live"' in inbox.text
        assert 'class="stack"' in inbox.text and 'data-label="Deadline"' in inbox.text
        assert "Critical" in inbox.text  # the risk, labelled
        live = await web.get("/referrals/live")
        assert live.status_code == 200
        assert "<html" not in live.text and group_of(live.text, referral) == "new"

        # One referral: what a shelter needs, and the decision forms.
        page = await web.get(f"/referrals/{referral}")
        assert page.status_code == 200, page.text
        assert 'data-field="beds">3<' in page.text
        assert 'data-status="pending"' in page.text
        assert 'data-action="accept"' in page.text and 'data-action="decline"' in page.text
        assert '<select id="decline-reason" name="reason" required' in page.text
        assert '<option value="no_capacity">' in page.text
        assert "REFERRAL_STATUS" not in page.text and "DECLINE_REASON" not in page.text

        # Declining needs a reason: refused naming it, nothing sent.
        refused = await web.post(f"/referrals/{referral}/decline", reason="")
        assert refused.status_code == 400
        assert field_error(refused.text, "decline-reason")
        assert await status_of(stub, referral) == PENDING
        bogus = await web.post(f"/referrals/{referral}/decline", reason="bored")
        assert bogus.status_code == 400 and field_error(bogus.text, "decline-reason")

        # A form without the CSRF token is refused before anything runs.
        forged = await web.client.post(f"/referrals/{referral}/accept", data={})
        assert_refused(forged, "csrf", 403)
        assert await status_of(stub, referral) == PENDING

        # Accept: back to the referral (303), told so once.
        accepted = await web.post(f"/referrals/{referral}/accept", key=forms.new_key())
        assert accepted.status_code == 303
        assert accepted.headers["location"] == f"/referrals/{referral}"
        assert await status_of(stub, referral) == ACCEPTED
        page = await web.get(f"/referrals/{referral}")
        assert "Referral accepted." in page.text
        assert "journey will be told as soon as it can be reached" in page.text  # QUEUED
        assert 'data-action="start"' in page.text and "Record check-in" in page.text
        again = await web.get(f"/referrals/{referral}")
        assert "Referral accepted." not in again.text
        inbox = await web.get("/referrals")
        assert group_of(inbox.text, referral) == "in_hand"

        # Check-in.
        started = await web.post(f"/referrals/{referral}/start")
        assert started.status_code == 303
        assert await status_of(stub, referral) == IN_SERVICE
        page = await web.get(f"/referrals/{referral}")
        assert "Check-in recorded." in page.text
        assert '<select id="complete-outcome" name="outcome" required' in page.text
        assert '<option value="">Choose…</option>' in page.text
        assert " selected" not in page.text.split('id="complete-outcome"')[1].split("</select>")[0]

        # Completing without an outcome is refused, naming the field: no
        # default outcome, nothing sent.
        refused = await web.post(f"/referrals/{referral}/complete")
        assert refused.status_code == 400
        assert field_error(refused.text, "complete-outcome")
        assert await status_of(stub, referral) == IN_SERVICE
        placement = await stub.GetPlacement(shelter_pb2.GetPlacementRequest(referral_id=referral))
        assert placement.placement.exit_reason == shelter_pb2.EXIT_REASON_UNSPECIFIED

        done = await web.post(f"/referrals/{referral}/complete", outcome="family_or_friends")
        assert done.status_code == 303
        assert await status_of(stub, referral) == COMPLETED
        page = await web.get(f"/referrals/{referral}")
        assert "Outcome recorded. The referral is completed." in page.text
        assert "Hosted by family or friends she considers safe" in page.text
        assert 'data-empty="1"' in page.text  # nothing left to do
        assert "Checked out" in page.text  # the timeline
        inbox = await web.get("/referrals")
        assert referral not in inbox.text


async def test_another_organisations_referral_is_not_allowed_and_shows_nothing(
    tmp_path: Path, shelter: RunningSector
) -> None:
    stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
    theirs = await make_shelter(stub, "Dar Other", OTHER_ORG)
    elsewhere = await place(stub, theirs.shelter_id)

    async with console_as(tmp_path, "shelter_staff", ORG, {"shelter": shelter.address}) as web:
        other = await web.get(f"/referrals/{elsewhere}")
        unknown = await web.get("/referrals/shr-0123456789abcdef")
        for response in (other, unknown):
            assert_refused(response, "not_allowed", 403)
            assert "Not allowed" in response.text
            assert "Dar Other" not in response.text and "data-field" not in response.text
        # The two refusals cannot be told apart (but for the path itself).
        assert other.text.replace(elsewhere, "ID") == unknown.text.replace(
            "shr-0123456789abcdef", "ID"
        )
        # Another sector's id, a malformed one: the same.
        assert_refused(await web.get("/referrals/leg-0123456789abcdef"), "not_allowed", 403)
        assert_refused(await web.get("/referrals/shr-NOTANID"), "not_allowed", 403)
        # Acting on it: refused the same way, and nothing changes.
        for action in ("accept", "start"):
            refused = await web.post(f"/referrals/{elsewhere}/{action}")
            assert_refused(refused, "not_allowed", 403)
        refused = await web.post(f"/referrals/{elsewhere}/decline", reason="no_capacity")
        assert_refused(refused, "not_allowed", 403)
        refused = await web.post(f"/referrals/{elsewhere}/complete", outcome="other")
        assert_refused(refused, "not_allowed", 403)
        assert await status_of(stub, elsewhere) == PENDING


async def test_shelter_capacity_shows_only_my_organisations_beds(
    tmp_path: Path, shelter: RunningSector
) -> None:
    stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
    mine = await make_shelter(stub, "Dar Amane", ORG, capacity=5)
    await make_shelter(stub, "Dar Other", OTHER_ORG)
    referral = await place(stub, mine.shelter_id, household=2)

    async with console_as(tmp_path, "shelter_staff", ORG, {"shelter": shelter.address}) as web:
        assert (await web.post(f"/referrals/{referral}/accept")).status_code == 303
        page = await web.get("/capacity")
        assert page.status_code == 200, page.text
        assert "Dar Amane" in page.text and "Dar Other" not in page.text
        row = page.text.split(f'data-provider="{mine.shelter_id}"')[1].split("</tr>")[0]
        assert 'data-field="capacity">5<' in row
        assert 'data-field="reserved">2<' in row
        assert ">3</span>" in row  # free
        assert "Wheelchair access" in row
        # One small form per row: the number, at least the beds in use.
        assert row.count("<form") == 1
        assert f'<label for="capacity-{mine.shelter_id}">Beds at Dar Amane</label>' in row
        assert number_input(row, mine.shelter_id) == {
            "name": "capacity",
            "type": "number",
            "min": "2",
            "value": "5",
        }
        assert '<button type="submit">Save</button>' in row
        assert f'name="provider_id" value="{mine.shelter_id}"' in row

    async with console_as(tmp_path, "legal_aid", ORG, {"shelter": shelter.address}) as web:
        assert_refused(await web.get("/capacity"), "not_allowed", 403)
        refused = await web.post("/capacity", provider_id=mine.shelter_id, capacity="9")
        assert_refused(refused, "not_allowed", 403)
    assert (await shelter_row(stub, mine.shelter_id)).capacity == 5


def number_input(html: str, provider_id: str) -> dict[str, str]:
    """Some attributes of the number input of `provider_id`'s form."""
    found = re.search(rf'<input id="capacity-{re.escape(provider_id)}"[^>]*>', html)
    assert found, html
    attributes = dict(re.findall(r'([a-z-]+)="([^"]*)"', found.group(0)))
    return {name: attributes[name] for name in ("name", "type", "min", "value")}


async def shelter_row(stub: Any, shelter_id: str) -> Any:
    reply = await stub.ListShelters(shelter_pb2.ListSheltersRequest())
    (found,) = [s for s in reply.shelters if s.shelter_id == shelter_id]
    return found


async def test_shelter_staff_change_their_shelters_beds_never_below_those_in_use(
    tmp_path: Path, shelter: RunningSector
) -> None:
    stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
    mine = await make_shelter(stub, "Dar Amane", ORG, capacity=5)
    theirs = await make_shelter(stub, "Dar Other", OTHER_ORG, capacity=4)
    referral = await place(stub, mine.shelter_id, household=3)

    async with console_as(tmp_path, "shelter_staff", ORG, {"shelter": shelter.address}) as web:
        assert (await web.post(f"/referrals/{referral}/accept")).status_code == 303

        # More beds: back to the page (303), told so once, the new number shown.
        saved = await web.post(
            "/capacity", provider_id=mine.shelter_id, capacity="8", key=forms.new_key()
        )
        assert saved.status_code == 303
        assert saved.headers["location"] == "/capacity"
        assert (await shelter_row(stub, mine.shelter_id)).capacity == 8
        page = await web.get("/capacity")
        assert "Number of beds saved." in page.text
        row = page.text.split(f'data-provider="{mine.shelter_id}"')[1].split("</tr>")[0]
        assert 'data-field="capacity">8<' in row and ">5</span>" in row  # free
        assert number_input(row, mine.shelter_id)["value"] == "8"
        assert "Number of beds saved." not in (await web.get("/capacity")).text

        # Below the beds in use: the page again (400), the field named, nothing changed.
        below = await web.post("/capacity", provider_id=mine.shelter_id, capacity="2")
        assert below.status_code == 400
        assert field_error(below.text, f"capacity-{mine.shelter_id}")
        assert "This cannot be less than what is in use now: 3." in below.text
        assert 'data-errors="1"' in below.text
        assert f'href="#capacity-{mine.shelter_id}"' in below.text
        assert number_input(below.text, mine.shelter_id)["value"] == "2"  # what she typed
        assert (await shelter_row(stub, mine.shelter_id)).capacity == 8

        # Not a number: refused by the page itself, named; nothing sent.
        for bad in ("", "three", "-1", "2.5"):
            wrong = await web.post("/capacity", provider_id=mine.shelter_id, capacity=bad)
            assert wrong.status_code == 400, bad
            assert field_error(wrong.text, f"capacity-{mine.shelter_id}")
            assert "Enter a whole number, 0 or more." in wrong.text
        # Beyond the service's maximum: named too, with the service's reason.
        huge = await web.post("/capacity", provider_id=mine.shelter_id, capacity="9999")
        assert huge.status_code == 400
        assert field_error(huge.text, f"capacity-{mine.shelter_id}")
        assert "This value was refused." in huge.text and "between 0 and 500" in huge.text
        assert (await shelter_row(stub, mine.shelter_id)).capacity == 8

        # Exactly the beds in use: allowed (the shelter is full).
        assert (
            await web.post("/capacity", provider_id=mine.shelter_id, capacity="3")
        ).status_code == 303
        assert (await shelter_row(stub, mine.shelter_id)).free_beds == 0

        # The same form sent twice (its key) does it once; the key sent again
        # for another number (a page kept open) shows the numbers as they are.
        form_key = forms.new_key()
        for _ in range(2):
            sent = await web.post(
                "/capacity", provider_id=mine.shelter_id, capacity="6", key=form_key
            )
            assert sent.status_code == 303
        stale = await web.post("/capacity", provider_id=mine.shelter_id, capacity="7", key=form_key)
        assert stale.status_code == 400
        assert "This form had already been sent." in stale.text
        assert number_input(stale.text, mine.shelter_id)["value"] == "6"
        assert (await shelter_row(stub, mine.shelter_id)).capacity == 6

        # Another organisation's shelter, an unknown one, a programme's id, a
        # malformed one: not allowed alike, nothing changed.
        for other in (theirs.shelter_id, "shl-0123456789ab", "prg-0123456789ab", "shl-X"):
            refused = await web.post("/capacity", provider_id=other, capacity="9")
            assert_refused(refused, "not_allowed", 403)
            assert "Dar Other" not in refused.text
        assert (await shelter_row(stub, theirs.shelter_id)).capacity == 4

        # Without the CSRF token: refused before anything runs.
        forged = await web.client.post(
            "/capacity", data={"provider_id": mine.shelter_id, "capacity": "9"}
        )
        assert_refused(forged, "csrf", 403)
        assert (await shelter_row(stub, mine.shelter_id)).capacity == 6


class Inbox(network_pb2_grpc.NetworkServiceServicer):
    """A stand-in for the network service's ListNotifications only: the
    person's notifications, as the test sets them."""

    def __init__(self) -> None:
        self.notifications: list[network_pb2.Notification] = []

    async def ListNotifications(
        self, request: network_pb2.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> network_pb2.ListNotificationsResponse:
        return network_pb2.ListNotificationsResponse(notifications=self.notifications)


@asynccontextmanager
async def notifications_served() -> AsyncIterator[tuple[Inbox, str]]:
    server = grpc.aio.server()
    inbox = Inbox()  # type: ignore[abstract]  # ListNotifications only
    network_pb2_grpc.add_NetworkServiceServicer_to_server(inbox, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield inbox, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_the_inbox_shows_the_deadlines_and_rungs_her_notifications_carry(
    tmp_path: Path, shelter: RunningSector
) -> None:
    stub = shelter_pb2_grpc.ShelterServiceStub(shelter.channel)
    mine = await make_shelter(stub, "Dar Amane", ORG, capacity=10)
    late, soon, fresh = [await place(stub, mine.shelter_id, household=1) for _ in range(3)]
    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    async with notifications_served() as (inbox, address):
        inbox.notifications = [
            notification(late, NEW, now, now - hour),
            notification(soon, NEW, now, now + 2 * hour),
            notification(soon, REMINDER, now, now + 2 * hour, rung=1),
            notification(fresh, NEW, now, now + 24 * hour),
        ]
        addrs = {"shelter": shelter.address, "network": address}
        async with console_as(tmp_path, "shelter_staff", ORG, addrs) as web:
            page = (await web.get("/referrals")).text
            assert group_of(page, late) == "overdue"
            assert group_of(page, soon) == "due_soon"
            assert group_of(page, fresh) == "new"
            row = page.split(f'data-referral="{soon}"')[1].split("</tr>")[0]
            assert 'data-deadline="' in row and 'class="badge due-soon"' in row
            assert "Reminder" in row and ("in 1 hour" in row or "in 2 hours" in row)
            row = page.split(f'data-referral="{late}"')[1].split("</tr>")[0]
            assert 'class="badge overdue"' in row and "1 hour ago" in row
            detail = (await web.get(f"/referrals/{late}")).text
            assert 'data-field="deadline"' in detail and "1 hour ago" in detail


# --- legal aid -------------------------------------------------------------------------


@pytest.fixture
async def legal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningSector]:
    from services.legal.app import MIGRATIONS_DIR, build_components

    settings = sector_settings("legal", tmp_path, sqlite_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def test_legal_aid_meet_her_and_close_each_matter(
    tmp_path: Path, legal: RunningSector
) -> None:
    stub = legal_pb2_grpc.LegalAidServiceStub(legal.channel)
    provider = (
        await stub.CreateProvider(
            legal_pb2.CreateLegalProviderRequest(
                kind=legal_pb2.LEGAL_PROVIDER_KIND_LEGAL_AID_ASSOCIATION,
                name="Association Amane",
                region=FES,
                languages=["ary", "fr"],
                matters=[
                    legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
                    legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT,
                ],
                idempotency_key=key(),
                organisation_id=ORG,
            )
        )
    ).provider
    case = case_id()
    referral = (
        await stub.RequestLegalAid(
            legal_pb2.RequestLegalAidRequest(
                case_id=case,
                region=FES,
                risk=common_pb2.RISK_LEVEL_HIGH,
                needs=legal_pb2.LegalNeeds(
                    matters=[
                        legal_pb2.LEGAL_MATTER_PROTECTION_ORDER,
                        legal_pb2.LEGAL_MATTER_CRIMINAL_COMPLAINT,
                    ],
                    languages=["ary"],
                ),
                provider_id=provider.provider_id,
                idempotency_key=key(),
                consent_proof=consent_proof(case, "legal"),
            )
        )
    ).referral.referral_id

    async with console_as(tmp_path, "legal_aid", ORG, {"legal": legal.address}) as web:
        page = await web.get(f"/referrals/{referral}")
        assert page.status_code == 200, page.text
        assert "Darija" in page.text  # her languages, labelled
        assert "Protection order" in page.text and "Criminal complaint" in page.text
        assert "Capacity" not in page.text  # not in a legal aid's navigation
        assert 'data-certificate="1"' not in page.text
        assert (await web.post(f"/referrals/{referral}/accept")).status_code == 303

        # A hospital care unit issued a certificate: legal aid sees that it
        # exists, its date and ITT days (the complaint needs them), nothing clinical.
        await stub.NoteCertificate(
            legal_pb2.NoteCertificateRequest(
                referral_id=referral,
                issued_at=Timestamp(seconds=int(datetime.now(UTC).timestamp()) - 3600),
                itt_days=25,
                idempotency_key=key(),
            )
        )
        page = await web.get(f"/referrals/{referral}")
        assert 'data-certificate="1"' in page.text
        itt = page.text.split('data-field="itt-days">')[1].split("</dd>")[0]
        assert itt.startswith("25") and "art. 401" in itt

        # The first meeting cannot be in the future: the field is named.
        future = (datetime.now(i18n.MOROCCO) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
        refused = await web.post(f"/referrals/{referral}/start", met_at=future)
        assert refused.status_code == 400
        assert field_error(refused.text, "start-met-at")
        assert await status_of(stub, referral) == ACCEPTED
        assert (await web.post(f"/referrals/{referral}/start", met_at="")).status_code == 303
        assert await status_of(stub, referral) == IN_SERVICE
        page = await web.get(f"/referrals/{referral}")
        assert "First meeting recorded." in page.text
        assert 'name="matter"' in page.text and 'name="closed_at"' in page.text

        # Closing a matter needs the outcome.
        refused = await web.post(f"/referrals/{referral}/complete", matter="protection_order")
        assert refused.status_code == 400 and field_error(refused.text, "complete-outcome")
        assert not field_error(refused.text, "complete-matter")

        closed = await web.post(
            f"/referrals/{referral}/complete", matter="protection_order", outcome="relief_granted"
        )
        assert closed.status_code == 303
        assert await status_of(stub, referral) == IN_SERVICE
        page = await web.get(f"/referrals/{referral}")
        assert "Matter closed. Other matters of this referral are still open." in page.text
        assert "Relief granted" in page.text
        # Only the open matter is offered now (and, alone, chosen).
        matter_select = page.text.split('id="complete-matter"')[1].split("</select>")[0]
        assert 'value="criminal_complaint" selected' in matter_select
        assert "protection_order" not in matter_select

        # The service's own refusal names the field too: not before the
        # matter was opened (minutes ago).
        an_hour_ago = datetime.now(i18n.MOROCCO) - timedelta(hours=1)
        refused = await web.post(
            f"/referrals/{referral}/complete",
            matter="criminal_complaint",
            outcome="dismissed",
            closed_at=an_hour_ago.strftime("%Y-%m-%dT%H:%M"),
        )
        assert refused.status_code == 400 and field_error(refused.text, "complete-closed-at")
        assert "must not be before the matter was opened" in refused.text
        assert 'value="dismissed" selected' in refused.text  # her choice is kept

        last = await web.post(
            f"/referrals/{referral}/complete", matter="criminal_complaint", outcome="dismissed"
        )
        assert last.status_code == 303
        assert await status_of(stub, referral) == COMPLETED
        page = await web.get(f"/referrals/{referral}")
        assert "Outcome recorded. The referral is completed." in page.text


# --- employment ------------------------------------------------------------------------


@pytest.fixture
async def employment(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningSector]:
    from services.employment.app import MIGRATIONS_DIR, build_components

    settings = sector_settings("employment", tmp_path, sqlite_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def test_employment_training_then_job_placement(
    tmp_path: Path, employment: RunningSector
) -> None:
    stub = employment_pb2_grpc.EmploymentServiceStub(employment.channel)
    starts = Timestamp()
    starts.FromDatetime(datetime.now(UTC).replace(tzinfo=None) + timedelta(days=30))
    programme = (
        await stub.CreateProgramme(
            employment_pb2.CreateProgrammeRequest(
                name="Atelier couture",
                kind=employment_pb2.PROGRAMME_KIND_SEWING,
                region=FES,
                seats=3,
                start_date=starts,
                languages=["ary"],
                idempotency_key=key(),
                organisation_id=ORG,
            )
        )
    ).programme
    case = case_id()
    referral = (
        await stub.RequestEnrolment(
            employment_pb2.RequestEnrolmentRequest(
                case_id=case,
                risk=common_pb2.RISK_LEVEL_MEDIUM,
                region=FES,
                needs=employment_pb2.EmploymentNeeds(),
                provider_id=programme.programme_id,
                idempotency_key=key(),
                consent_proof=consent_proof(case, "employment"),
            )
        )
    ).referral.referral_id

    async with console_as(
        tmp_path, "employment_officer", ORG, {"employment": employment.address}
    ) as web:
        assert (await web.post(f"/referrals/{referral}/accept")).status_code == 303
        capacity = await web.get("/capacity")
        assert "Atelier couture" in capacity.text and "Sewing" in capacity.text
        assert 'data-field="taken">1<' in capacity.text
        programme_id = programme.programme_id
        assert f'<label for="capacity-{programme_id}">Seats in Atelier couture</label>' in (
            capacity.text
        )
        assert number_input(capacity.text, programme_id)["min"] == "1"

        # The officer keeps the seats up to date, never below those taken.
        saved = await web.post("/capacity", provider_id=programme_id, capacity="5")
        assert saved.status_code == 303
        assert "Number of seats saved." in (await web.get("/capacity")).text
        below = await web.post("/capacity", provider_id=programme_id, capacity="0")
        assert below.status_code == 400
        assert field_error(below.text, f"capacity-{programme_id}")
        assert "This cannot be less than what is in use now: 1." in below.text
        reply = await stub.ListProgrammes(employment_pb2.ListProgrammesRequest())
        assert [p.seats for p in reply.programmes] == [5]
        assert (await web.post(f"/referrals/{referral}/start")).status_code == 303
        assert await status_of(stub, referral) == IN_SERVICE

        # A job placement needs the employer and the contract, each named.
        refused = await web.post(f"/referrals/{referral}/complete", outcome="job_placed")
        assert refused.status_code == 400
        assert field_error(refused.text, "complete-employer-type")
        assert field_error(refused.text, "complete-contract-type")
        assert await status_of(stub, referral) == IN_SERVICE

        certified = await web.post(f"/referrals/{referral}/complete", outcome="certified")
        assert certified.status_code == 303
        assert await status_of(stub, referral) == IN_SERVICE
        page = await web.get(f"/referrals/{referral}")
        assert "The referral stays open for the job search." in page.text
        outcome_select = page.text.split('id="complete-outcome"')[1].split("</select>")[0]
        assert 'value="job_placed"' in outcome_select and "certified" not in outcome_select

        placed = await web.post(
            f"/referrals/{referral}/complete",
            outcome="job_placed",
            employer_type="cooperative",
            contract_type="fixed_term",
        )
        assert placed.status_code == 303
        assert await status_of(stub, referral) == COMPLETED
        page = await web.get(f"/referrals/{referral}")
        assert "Cooperative" in page.text and "Fixed term (CDD)" in page.text


# --- health -----------------------------------------------------------------------------


@pytest.fixture
async def health(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningSector]:
    from services.health.app import MIGRATIONS_DIR, build_components

    settings = sector_settings("health", tmp_path, sqlite_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def make_care_unit(stub: Any, name: str, organisation: str) -> Any:
    reply = await stub.CreateCareUnit(
        health_pb2.CreateCareUnitRequest(
            name=name,
            region=FES,
            services=[
                health_pb2.CARE_SERVICE_PEP,
                health_pb2.CARE_SERVICE_EMERGENCY_CONTRACEPTION,
                health_pb2.CARE_SERVICE_FORENSIC_EXAM,
                health_pb2.CARE_SERVICE_CERTIFICATE,
            ],
            languages=["ary", "fr"],
            idempotency_key=key(),
            organisation_id=organisation,
        )
    )
    return reply.care_unit


async def refer_for_care(stub: Any, unit_id: str, incident_at: datetime) -> str:
    """A medical referral after a rape at `incident_at`."""
    case = case_id()
    needs = health_pb2.HealthNeeds(
        care=[
            health_pb2.CARE_SERVICE_PEP,
            health_pb2.CARE_SERVICE_EMERGENCY_CONTRACEPTION,
            health_pb2.CARE_SERVICE_FORENSIC_EXAM,
            health_pb2.CARE_SERVICE_CERTIFICATE,
        ],
        incident_at=stamp(incident_at),
    )
    reply = await stub.RequestMedicalCare(
        health_pb2.RequestMedicalCareRequest(
            case_id=case,
            risk=common_pb2.RISK_LEVEL_CRITICAL,
            region=FES,
            needs=needs,
            provider_id=unit_id,
            idempotency_key=key(),
            consent_proof=consent_proof(case, "health"),
        )
    )
    return str(reply.referral.referral_id)


async def care_record(stub: Any, referral_id: str) -> Any:
    reply = await stub.GetCareRecord(health_pb2.GetCareRecordRequest(referral_id=referral_id))
    return reply.record


def local(at: datetime) -> str:
    """`at` as a datetime-local field says it: Morocco's time, to the minute."""
    return at.astimezone(i18n.MOROCCO).strftime("%Y-%m-%dT%H:%M")


def row_of(page: str, attribute: str, value: str) -> str:
    return page.split(f'{attribute}="{value}"')[1].split("</tr>")[0]


async def test_health_staff_record_the_care_she_received_each_with_its_time(
    tmp_path: Path, health: RunningSector
) -> None:
    stub = health_pb2_grpc.HealthServiceStub(health.channel)
    mine = await make_care_unit(stub, "Unité intégrée CHU Hassan II", ORG)
    theirs = await make_care_unit(stub, "Unité intégrée Al Ghassani", OTHER_ORG)
    incident = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=60)
    referral = await refer_for_care(stub, mine.care_unit_id, incident)
    elsewhere = await refer_for_care(stub, theirs.care_unit_id, incident)

    async with console_as(tmp_path, "health_staff", ORG, {"health": health.address}) as web:
        # The inbox: her unit's referral only, with the others' grouping, live.
        inbox = await web.get("/referrals")
        assert inbox.status_code == 200, inbox.text
        assert group_of(inbox.text, referral) == "new"
        assert elsewhere not in inbox.text
        assert "Unité intégrée CHU Hassan II" in inbox.text and "Al Ghassani" not in inbox.text
        assert "Health care" in inbox.text and 'data-live="/referrals/live"' in inbox.text
        assert group_of((await web.get("/referrals/live")).text, referral) == "new"
        assert "Capacity" not in inbox.text  # not in a health staff's navigation

        # What she needs: the care asked for, the incident, the time left in
        # each clinical window (60 h after the incident: PEP 12 h, EC 60 h).
        page = await web.get(f"/referrals/{referral}")
        assert page.status_code == 200, page.text
        assert 'data-care="pep"' in page.text and "Medico-legal certificate" in page.text
        assert 'data-field="incident"' in page.text
        pep_row = row_of(page.text, "data-window", "pep")
        assert 'data-window="pep" data-state="open"' in page.text
        assert "in 12 hours" in pep_row
        closes = re.search(r'data-deadline="([^"]+)"', pep_row)
        assert closes and datetime.fromisoformat(closes.group(1)) == incident + timedelta(hours=72)
        assert "in 2 days" in row_of(page.text, "data-window", "emergency_contraception")
        assert "CARE_SERVICE" not in page.text and "PEP_OUTCOME" not in page.text
        # Pending: only accept and decline.
        assert 'data-action="accept"' in page.text and 'data-action="decline"' in page.text
        assert 'data-action="pep"' not in page.text

        assert (await web.post(f"/referrals/{referral}/accept")).status_code == 303
        assert await status_of(stub, referral) == ACCEPTED
        page = await web.get(f"/referrals/{referral}")
        for form_name in ("start", "pep", "emergency-contraception", "forensic-exam"):
            assert f'data-action="{form_name}"' in page.text, form_name
        assert 'data-action="certificate"' in page.text and 'data-action="visit"' in page.text
        assert 'data-action="complete"' not in page.text
        assert '<label for="pep-outcome">' in page.text and '<label for="pep-at">' in page.text
        assert page.text.count('name="csrf"') >= 7 and page.text.count('name="key"') >= 6

        # A record needs what happened: refused naming the field, nothing sent.
        refused = await web.post(f"/referrals/{referral}/pep")
        assert refused.status_code == 400 and field_error(refused.text, "pep-outcome")
        assert 'href="#pep-outcome"' in refused.text
        assert (await care_record(stub, referral)).pep == health_pb2.PEP_OUTCOME_UNSPECIFIED
        # Without its CSRF token: refused before anything runs.
        forged = await web.client.post(
            f"/referrals/{referral}/pep", data={"pep_outcome": "started"}
        )
        assert_refused(forged, "csrf", 403)

        # PEP started now: the window is met on this side; the form is gone.
        done = await web.post(
            f"/referrals/{referral}/pep", pep_outcome="started", pep_at="", key=forms.new_key()
        )
        assert done.status_code == 303 and done.headers["location"] == f"/referrals/{referral}"
        record = await care_record(stub, referral)
        assert record.pep == health_pb2.PEP_OUTCOME_STARTED
        assert abs(record.pep_at.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=1)
        page = await web.get(f"/referrals/{referral}")
        assert "PEP recorded." in page.text
        assert "journey will be told as soon as it can be reached" in page.text  # QUEUED
        assert 'data-window="pep" data-state="recorded"' in page.text
        assert 'data-action="pep"' not in page.text

        # Emergency contraception declined an hour ago (Morocco's time, sent
        # in UTC): afterwards only giving it is offered.
        an_hour_ago = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
        declined = await web.post(
            f"/referrals/{referral}/emergency-contraception",
            emergency_contraception_outcome="declined",
            emergency_contraception_at=local(an_hour_ago),
        )
        assert declined.status_code == 303
        record = await care_record(stub, referral)
        assert record.emergency_contraception == health_pb2.CONTRACEPTION_OUTCOME_DECLINED
        assert record.emergency_contraception_at.ToDatetime(tzinfo=UTC) == an_hour_ago
        page = await web.get(f"/referrals/{referral}")
        ec_select = page.text.split('id="emergency-contraception-outcome"')[1].split("</select>")[0]
        assert 'value="given"' in ec_select and 'value="declined"' not in ec_select
        assert "Declined by her" in row_of(page.text, "data-window", "emergency_contraception")

        # The service's refusal is shown beside the field: not before the incident.
        before = await web.post(
            f"/referrals/{referral}/forensic-exam",
            forensic_exam_outcome="done",
            forensic_exam_at=local(incident - timedelta(hours=2)),
        )
        assert before.status_code == 400 and field_error(before.text, "forensic-exam-at")
        assert "This value was refused." in before.text and "before the incident" in before.text
        exam_select = before.text.split('id="forensic-exam-outcome"')[1].split("</select>")[0]
        assert 'value="done" selected' in exam_select  # her choice is kept
        future = await web.post(
            f"/referrals/{referral}/forensic-exam",
            forensic_exam_outcome="done",
            forensic_exam_at=local(datetime.now(UTC) + timedelta(days=1)),
        )
        assert future.status_code == 400 and field_error(future.text, "forensic-exam-at")
        assert "This cannot be in the future." in future.text
        assert (await care_record(stub, referral)).forensic_exam == 0

        # The certificate: ITT days 0..365, checked here first.
        for bad in ("", "-1", "366", "twelve", "2.5"):
            wrong = await web.post(f"/referrals/{referral}/certificate", itt_days=bad)
            assert wrong.status_code == 400, bad
            assert field_error(wrong.text, "certificate-itt-days")
            assert "Enter a whole number of days between 0 and 365." in wrong.text
        assert not (await care_record(stub, referral)).HasField("certificate_issued_at")
        issued = await web.post(f"/referrals/{referral}/certificate", itt_days="25")
        assert issued.status_code == 303
        record = await care_record(stub, referral)
        assert record.certificate_itt_days == 25 and record.HasField("certificate_issued_at")
        page = await web.get(f"/referrals/{referral}")
        assert "Certificate recorded." in page.text
        assert 'data-itt="25"' in page.text and "ITT: 25 days" in page.text
        assert "Penal Code art. 401" in page.text

        # She was seen: in care; a follow-up visit; then how her care ended.
        assert (await web.post(f"/referrals/{referral}/start")).status_code == 303
        assert await status_of(stub, referral) == IN_SERVICE
        assert (
            "Recorded: she was seen at the unit." in (await web.get(f"/referrals/{referral}")).text
        )
        visit = await web.post(f"/referrals/{referral}/visit", visit="two_weeks")
        assert visit.status_code == 303
        record = await care_record(stub, referral)
        assert [v.visit for v in record.follow_up_visits] == [health_pb2.FOLLOW_UP_VISIT_TWO_WEEKS]
        page = await web.get(f"/referrals/{referral}")
        assert 'data-visit="two_weeks" data-done="yes"' in page.text
        visit_select = page.text.split('id="visit-visit"')[1].split("</select>")[0]
        assert "two_weeks" not in visit_select and 'value="three_months"' in visit_select
        again = await web.post(f"/referrals/{referral}/visit", visit="two_weeks")
        assert again.status_code == 400 and field_error(again.text, "visit-visit")

        refused = await web.post(f"/referrals/{referral}/complete")
        assert refused.status_code == 400 and field_error(refused.text, "complete-outcome")
        assert await status_of(stub, referral) == IN_SERVICE
        ended = await web.post(f"/referrals/{referral}/complete", outcome="transferred")
        assert ended.status_code == 303
        assert await status_of(stub, referral) == COMPLETED
        page = await web.get(f"/referrals/{referral}")
        assert "Her care continues elsewhere" in page.text
        assert "Seen at the unit" in page.text and "Certificate issued" in page.text  # timeline
        assert 'data-empty="1"' in page.text  # nothing left to do

        # Another unit's referral: "not allowed", as for every sector.
        other = await web.get(f"/referrals/{elsewhere}")
        assert_refused(other, "not_allowed", 403)
        assert "Al Ghassani" not in other.text and "data-field" not in other.text
        assert_refused(await web.get("/referrals/hlt-0123456789abcdef"), "not_allowed", 403)
        assert_refused(await web.get("/referrals/psy-0123456789abcdef"), "not_allowed", 403)
        for form_name, fields in (
            ("accept", {}),
            ("pep", {"pep_outcome": "declined"}),
            ("certificate", {"itt_days": "3"}),
        ):
            refused = await web.post(f"/referrals/{elsewhere}/{form_name}", **fields)
            assert_refused(refused, "not_allowed", 403)
        assert await status_of(stub, elsewhere) == PENDING

    # In Arabic: right to left, the care in the catalog's words.
    async with console_as(
        tmp_path, "health_staff", ORG, {"health": health.address}, language="ar"
    ) as web:
        page = await web.get(f"/referrals/{referral}")
        assert page.status_code == 200 and 'dir="rtl"' in page.text
        assert "الرعاية المسجلة" in page.text and "الشهادة الطبية الشرعية" in page.text
        for english in ("Care recorded", "Medico-legal certificate", "Follow-up visits"):
            assert english not in page.text

    # Other staff may not send the health forms at all.
    async with console_as(tmp_path, "shelter_staff", OTHER_ORG, {"health": health.address}) as web:
        refused = await web.post(f"/referrals/{elsewhere}/pep", pep_outcome="declined")
        assert_refused(refused, "not_allowed", 403)


# --- psychosocial -----------------------------------------------------------------------


@pytest.fixture
async def psychosocial(tmp_path: Path, sqlite_url: str) -> AsyncIterator[RunningSector]:
    from services.psychosocial.app import MIGRATIONS_DIR, build_components

    settings = sector_settings("psychosocial", tmp_path, sqlite_url)
    async with running_sector(settings, build_components, MIGRATIONS_DIR) as running:
        yield running


async def make_support_provider(stub: Any, name: str, organisation: str) -> Any:
    reply = await stub.CreateSupportProvider(
        psychosocial_pb2.CreateSupportProviderRequest(
            name=name,
            region=FES,
            kinds=[
                psychosocial_pb2.SUPPORT_KIND_COUNSELLING,
                psychosocial_pb2.SUPPORT_KIND_SOCIAL_SUPPORT,
            ],
            languages=["ary", "fr"],
            idempotency_key=key(),
            organisation_id=organisation,
        )
    )
    return reply.provider


async def refer_for_support(stub: Any, provider_id: str) -> str:
    case = case_id()
    reply = await stub.RequestSupport(
        psychosocial_pb2.RequestSupportRequest(
            case_id=case,
            risk=common_pb2.RISK_LEVEL_MEDIUM,
            region=FES,
            needs=psychosocial_pb2.PsychosocialNeeds(
                support=[psychosocial_pb2.SUPPORT_KIND_COUNSELLING]
            ),
            provider_id=provider_id,
            idempotency_key=key(),
            consent_proof=consent_proof(case, "psychosocial"),
        )
    )
    return str(reply.referral.referral_id)


async def support_file(stub: Any, referral_id: str) -> Any:
    reply = await stub.GetSupportFile(
        psychosocial_pb2.GetSupportFileRequest(referral_id=referral_id)
    )
    return reply.file


async def test_psychosocial_staff_record_sessions_and_keep_the_support_plan(
    tmp_path: Path, psychosocial: RunningSector
) -> None:
    stub = psychosocial_pb2_grpc.PsychosocialServiceStub(psychosocial.channel)
    mine = await make_support_provider(stub, "Écoute et soutien", ORG)
    theirs = await make_support_provider(stub, "Centre Annajda", OTHER_ORG)
    referral = await refer_for_support(stub, mine.provider_id)
    elsewhere = await refer_for_support(stub, theirs.provider_id)

    async with console_as(
        tmp_path, "psychosocial_staff", ORG, {"psychosocial": psychosocial.address}
    ) as web:
        inbox = await web.get("/referrals")
        assert inbox.status_code == 200, inbox.text
        assert group_of(inbox.text, referral) == "new" and elsewhere not in inbox.text
        assert "Écoute et soutien" in inbox.text and "Annajda" not in inbox.text

        page = await web.get(f"/referrals/{referral}")
        assert page.status_code == 200, page.text
        assert "Individual counselling" in page.text and "SUPPORT_KIND" not in page.text
        assert (await web.post(f"/referrals/{referral}/accept")).status_code == 303
        page = await web.get(f"/referrals/{referral}")
        assert 'data-action="session"' in page.text and 'data-action="plan"' in page.text
        # No review without a plan; the support starts with a session, not a button.
        assert 'data-action="review"' not in page.text and 'data-action="start"' not in page.text
        assert 'data-action="complete"' not in page.text
        assert "<textarea" not in page.text  # no session notes, anywhere
        assert_refused(await web.post(f"/referrals/{referral}/start"), "conflict", 409)

        # A session needs whether she came: named, nothing sent.
        refused = await web.post(f"/referrals/{referral}/session")
        assert refused.status_code == 400 and field_error(refused.text, "session-attendance")
        assert not (await support_file(stub, referral)).sessions

        # She did not come: recorded, the support not started.
        yesterday = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
        missed = await web.post(
            f"/referrals/{referral}/session", attendance="missed", session_at=local(yesterday)
        )
        assert missed.status_code == 303
        assert await status_of(stub, referral) == ACCEPTED
        page = await web.get(f"/referrals/{referral}")
        assert "Session recorded." in page.text and 'data-attendance="missed"' in page.text
        # She came: her support has started (the journey is told).
        came = await web.post(f"/referrals/{referral}/session", attendance="attended")
        assert came.status_code == 303
        assert await status_of(stub, referral) == IN_SERVICE
        page = await web.get(f"/referrals/{referral}")
        assert "Session recorded. Her support has started." in page.text
        assert "journey will be told as soon as it can be reached" in page.text
        file = await support_file(stub, referral)
        assert [s.attendance for s in file.sessions] == [
            psychosocial_pb2.ATTENDANCE_MISSED,
            psychosocial_pb2.ATTENDANCE_ATTENDED,
        ]
        assert file.sessions[0].held_at.ToDatetime(tzinfo=UTC) == yesterday

        # The plan: goals from the coded list, at least one.
        refused = await web.post(f"/referrals/{referral}/plan")
        assert refused.status_code == 400 and field_error(refused.text, "plan-goals")
        assert "Choose at least one goal." in refused.text
        bogus = await web.client.post(
            f"/referrals/{referral}/plan", data={"csrf": web.csrf, "goals": ["housing", "luck"]}
        )
        assert bogus.status_code == 400 and field_error(bogus.text, "plan-goals")
        assert not (await support_file(stub, referral)).plan
        saved = await web.client.post(
            f"/referrals/{referral}/plan",
            data={"csrf": web.csrf, "goals": ["safety_planning", "housing"]},
        )
        assert saved.status_code == 303
        page = await web.get(f"/referrals/{referral}")
        assert "Support plan saved." in page.text
        assert 'data-goal="safety_planning" data-progress="not_started"' in page.text
        assert 'id="plan-goal-housing" name="goals" value="housing" checked' in page.text
        assert 'id="plan-goal-income" name="goals" value="income">' in page.text
        assert 'data-action="review"' in page.text

        # A review at a follow-up: the progress of at least one goal.
        refused = await web.post(f"/referrals/{referral}/review")
        assert refused.status_code == 400 and field_error(refused.text, "review-goals")
        assert "Choose the progress of at least one goal." in refused.text
        reviewed = await web.post(
            f"/referrals/{referral}/review", progress_safety_planning="achieved"
        )
        assert reviewed.status_code == 303
        file = await support_file(stub, referral)
        progress = {g.goal: g.progress for g in file.plan}
        assert progress == {
            psychosocial_pb2.SUPPORT_GOAL_SAFETY_PLANNING: psychosocial_pb2.GOAL_PROGRESS_ACHIEVED,
            psychosocial_pb2.SUPPORT_GOAL_HOUSING: psychosocial_pb2.GOAL_PROGRESS_NOT_STARTED,
        }
        page = await web.get(f"/referrals/{referral}")
        assert "Review of the plan recorded." in page.text
        assert 'data-goal="safety_planning" data-progress="achieved"' in page.text

        # How her support ended: chosen, never a default.
        assert 'data-action="complete"' in page.text
        refused = await web.post(f"/referrals/{referral}/complete")
        assert refused.status_code == 400 and field_error(refused.text, "complete-outcome")
        ended = await web.post(f"/referrals/{referral}/complete", outcome="goals_met")
        assert ended.status_code == 303
        assert await status_of(stub, referral) == COMPLETED
        page = await web.get(f"/referrals/{referral}")
        assert "Goals met" in page.text and 'data-empty="1"' in page.text

        # Another association's referral: not allowed, nothing recorded.
        assert_refused(await web.get(f"/referrals/{elsewhere}"), "not_allowed", 403)
        refused = await web.post(f"/referrals/{elsewhere}/session", attendance="attended")
        assert_refused(refused, "not_allowed", 403)
        assert not (await support_file(stub, elsewhere)).sessions


# --- unit: labels, deadlines, forms ----------------------------------------------------


@pytest.mark.parametrize(
    ("choices", "enum", "prefix"),
    [
        (staff.STATUSES, common_pb2.ReferralStatus, "REFERRAL_STATUS_"),
        (staff.RISKS, common_pb2.RiskLevel, "RISK_LEVEL_"),
        (staff.SECTORS, common_pb2.Sector, "SECTOR_"),
        (staff.DECLINE_REASONS, common_pb2.DeclineReason, "DECLINE_REASON_"),
        (staff.ACCESSIBILITY, shelter_pb2.AccessibilityFeature, "ACCESSIBILITY_FEATURE_"),
        (staff.EXIT_REASONS, shelter_pb2.ExitReason, "EXIT_REASON_"),
        (staff.MATTERS, legal_pb2.LegalMatter, "LEGAL_MATTER_"),
        (staff.MATTER_STATUSES, legal_pb2.MatterStatus, "MATTER_STATUS_"),
        (staff.MATTER_OUTCOMES, legal_pb2.MatterOutcome, "MATTER_OUTCOME_"),
        (staff.PROTECTION_MEASURES, legal_pb2.ProtectionMeasure, "PROTECTION_MEASURE_"),
        (staff.PROTECTION_STATUSES, legal_pb2.ProtectionOrderStatus, "PROTECTION_ORDER_STATUS_"),
        (staff.COURTS, legal_pb2.CourtLevel, "COURT_LEVEL_"),
        (staff.HEARING_KINDS, legal_pb2.HearingKind, "HEARING_KIND_"),
        (staff.HEARING_STATUSES, legal_pb2.HearingStatus, "HEARING_STATUS_"),
        (staff.PROGRAMME_KINDS, employment_pb2.ProgrammeKind, "PROGRAMME_KIND_"),
        (staff.TRAINING_OUTCOMES, employment_pb2.TrainingOutcome, "TRAINING_OUTCOME_"),
        (staff.EMPLOYERS, employment_pb2.EmployerType, "EMPLOYER_TYPE_"),
        (staff.CONTRACTS, employment_pb2.ContractType, "CONTRACT_TYPE_"),
        (care.CARE, health_pb2.CareService, "CARE_SERVICE_"),
        (care.PEP_OUTCOMES, health_pb2.PepOutcome, "PEP_OUTCOME_"),
        (care.CONTRACEPTION_OUTCOMES, health_pb2.ContraceptionOutcome, "CONTRACEPTION_OUTCOME_"),
        (care.FORENSIC_OUTCOMES, health_pb2.ForensicOutcome, "FORENSIC_OUTCOME_"),
        (care.VISITS, health_pb2.FollowUpVisit, "FOLLOW_UP_VISIT_"),
        (care.CARE_OUTCOMES, health_pb2.CareOutcome, "CARE_OUTCOME_"),
        (care.SUPPORT_KINDS, psychosocial_pb2.SupportKind, "SUPPORT_KIND_"),
        (care.ATTENDANCE, psychosocial_pb2.Attendance, "ATTENDANCE_"),
        (care.GOALS, psychosocial_pb2.SupportGoal, "SUPPORT_GOAL_"),
        (care.PROGRESS, psychosocial_pb2.GoalProgress, "GOAL_PROGRESS_"),
        (care.SUPPORT_OUTCOMES, psychosocial_pb2.SupportOutcome, "SUPPORT_OUTCOME_"),
    ],
)
def test_every_enum_value_has_a_label_and_its_own_code(choices: Any, enum: Any, prefix: str):
    """Every value the API may send is labelled; form codes are the enum's names."""
    for name, value in enum.items():
        if value == 0:
            continue
        found = [c for c in choices if c.value == value]
        assert len(found) == 1, name
        assert found[0].code == name.removeprefix(prefix).lower()
        assert found[0].label and prefix not in found[0].label


def stamp(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at.astimezone(UTC).replace(tzinfo=None))
    return value


def notification(referral_id: str, kind: Any, occurred: datetime, due: datetime, rung: int = 0):
    return network_pb2.Notification(
        notification_id="ntf-" + secrets.token_hex(8),
        kind=kind,
        referral_id=referral_id,
        occurred_at=stamp(occurred),
        deadline=stamp(due),
        rung=rung,
    )


def referral_pb(referral_id: str, status: Any, created: datetime, decided: datetime | None = None):
    message = common_pb2.Referral(
        referral_id=referral_id, status=status, created_at=stamp(created), provider_id="p1"
    )
    if decided is not None:
        message.decided_at.CopyFrom(stamp(decided))
    return message


NEW = network_pb2.NOTIFICATION_KIND_NEW_REFERRAL
REMINDER = network_pb2.NOTIFICATION_KIND_REMINDER


def test_the_inbox_groups_by_the_deadline_its_notifications_carry() -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    fresh = referral_pb("shr-" + "1" * 16, PENDING, now - hour)
    halfway = referral_pb("shr-" + "2" * 16, PENDING, now - 2 * hour)
    reminded = referral_pb("shr-" + "3" * 16, PENDING, now - 3 * hour)
    late = referral_pb("shr-" + "4" * 16, PENDING, now - 30 * hour)
    unknown = referral_pb("shr-" + "5" * 16, PENDING, now - 99 * hour)
    taken = referral_pb("shr-" + "6" * 16, ACCEPTED, now - 5 * hour, decided=now - 4 * hour)
    notices = staff.notices_by_referral(
        [
            notification(fresh.referral_id, NEW, now - hour, now + 23 * hour),
            notification(halfway.referral_id, NEW, now - 2 * hour, now + hour),
            notification(reminded.referral_id, NEW, now - 3 * hour, now + 21 * hour),
            notification(reminded.referral_id, REMINDER, now - hour, now + 21 * hour, rung=1),
            notification(late.referral_id, NEW, now - 30 * hour, now - 6 * hour),
            # The accept deadline no longer applies once she is accepted.
            notification(taken.referral_id, NEW, now - 5 * hour, now - 3 * hour),
            # Another notification kind says nothing of the wait.
            network_pb2.Notification(
                kind=network_pb2.NOTIFICATION_KIND_ESCALATION,
                referral_id=fresh.referral_id,
                occurred_at=stamp(now),
                deadline=stamp(now - hour),
                rung=2,
            ),
        ]
    )
    groups = staff.inbox_groups(
        [taken, unknown, late, reminded, halfway, fresh, fresh], {"p1": "Dar"}, notices, now
    )
    ids = {key: [row.referral_id for row in rows] for key, _, rows in groups}
    assert [key for key, _, _ in groups] == ["overdue", "due_soon", "new", "in_hand"]
    assert ids["overdue"] == [late.referral_id]
    assert ids["due_soon"] == [halfway.referral_id, reminded.referral_id]  # by deadline
    assert ids["new"] == [fresh.referral_id, unknown.referral_id]  # unknown deadline last
    assert ids["in_hand"] == [taken.referral_id]
    rows = {row.referral_id: row for _, _, rs in groups for row in rs}
    assert rows[reminded.referral_id].rung == 1
    assert rows[fresh.referral_id].rung == 0 and rows[fresh.referral_id].provider == "Dar"
    assert rows[taken.referral_id].due is None
    assert rows[unknown.referral_id].due is None


def test_an_accepted_referral_takes_its_deadline_from_a_later_reminder() -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    hour = timedelta(hours=1)
    taken = referral_pb("shr-" + "6" * 16, ACCEPTED, now - 5 * hour, decided=now - 4 * hour)
    notices = staff.notices_by_referral(
        [
            notification(taken.referral_id, NEW, now - 5 * hour, now - 3 * hour),
            notification(taken.referral_id, REMINDER, now - hour, now + 2 * hour, rung=1),
        ]
    )
    wait = staff.wait_of(taken, notices[taken.referral_id])
    assert wait is not None and wait.due == now + 2 * hour and wait.rung == 1
    assert wait.due_soon(now) and not wait.overdue(now)
    assert staff.wait_of(referral_pb("shr-" + "7" * 16, IN_SERVICE, now), []) is None


def form(**fields: str) -> FormData:
    return FormData(list(fields.items()))


def detail(sector: str, file: Any) -> staff.Detail:
    referral = common_pb2.Referral(referral_id="x", status=IN_SERVICE)
    return staff.Detail(sector, referral, file, provider="", wait=None, timeline=[])


def test_completing_never_defaults_an_outcome() -> None:
    shelter_detail = detail("shelter", shelter_pb2.Placement())
    with pytest.raises(forms.FormErrors) as problem:
        staff.complete_step(shelter_detail, form(), "k")
    assert problem.value.errors == {"outcome": forms.REQUIRED}
    with pytest.raises(forms.FormErrors) as problem:
        staff.complete_step(shelter_detail, form(outcome="unspecified"), "k")
    assert problem.value.errors == {"outcome": forms.UNKNOWN_CHOICE}
    step = staff.complete_step(shelter_detail, form(outcome="transferred"), "k")
    assert step.method == "CheckOut"
    assert step.message.exit_reason == shelter_pb2.EXIT_REASON_TRANSFERRED

    legal_file = legal_pb2.GetLegalFileResponse(
        matters=[
            legal_pb2.LegalMatterRecord(
                matter=legal_pb2.LEGAL_MATTER_FAMILY_LAW, status=legal_pb2.MATTER_STATUS_OPEN
            ),
            legal_pb2.LegalMatterRecord(
                matter=legal_pb2.LEGAL_MATTER_RESIDENCY, status=legal_pb2.MATTER_STATUS_CLOSED
            ),
        ]
    )
    legal_detail = detail("legal", legal_file)
    with pytest.raises(forms.FormErrors) as problem:
        staff.complete_step(legal_detail, form(closed_at="soon"), "k")
    assert set(problem.value.errors) == {"outcome", "matter", "closed_at"}
    with pytest.raises(forms.FormErrors) as problem:  # a closed matter is not offered
        staff.complete_step(legal_detail, form(matter="residency", outcome="settled"), "k")
    assert problem.value.errors == {"matter": forms.UNKNOWN_CHOICE}
    step = staff.complete_step(legal_detail, form(matter="family_law", outcome="settled"), "k")
    assert step.method == "CloseMatter"
    assert step.message.outcome == legal_pb2.MATTER_OUTCOME_SETTLED
    assert step.message.HasField("closed_at")

    trained = employment_pb2.Enrolment(training_outcome=employment_pb2.TRAINING_OUTCOME_CERTIFIED)
    with pytest.raises(forms.FormErrors) as problem:  # certified once: job placement only
        staff.complete_step(detail("employment", trained), form(outcome="dropped_out"), "k")
    assert problem.value.errors == {"outcome": forms.UNKNOWN_CHOICE}
    step = staff.complete_step(
        detail("employment", employment_pb2.Enrolment()), form(outcome="dropped_out"), "k"
    )
    assert step.method == "CompleteTraining"
    assert step.message.outcome == employment_pb2.TRAINING_OUTCOME_DROPPED_OUT


def test_times_are_morocco_time_and_not_in_the_future() -> None:
    now = datetime(2025, 7, 1, 12, tzinfo=UTC)  # Morocco is UTC+1 then
    assert forms.past_time(form(), "met_at", now=now) == now
    at = forms.past_time(form(met_at="2025-07-01T10:30"), "met_at", now=now)
    assert at == datetime(2025, 7, 1, 9, 30, tzinfo=UTC)
    with pytest.raises(forms.FormErrors) as problem:
        forms.past_time(form(met_at="2025-07-01T14:00"), "met_at", now=now)
    assert problem.value.errors == {"met_at": forms.FUTURE_TIME}
    with pytest.raises(forms.FormErrors) as problem:
        forms.past_time(form(met_at="yesterday"), "met_at", now=now)
    assert problem.value.errors == {"met_at": forms.BAD_TIME}


def test_the_clinical_windows_count_from_the_incident_and_close_once_recorded() -> None:
    incident = datetime(2026, 3, 1, 13, tzinfo=UTC)
    record = health_pb2.CareRecord(
        care=[health_pb2.CARE_SERVICE_PEP, health_pb2.CARE_SERVICE_CERTIFICATE],
        incident_at=stamp(incident),
        emergency_contraception=health_pb2.CONTRACEPTION_OUTCOME_DECLINED,
        emergency_contraception_at=stamp(incident + timedelta(hours=30)),
        forensic_exam=health_pb2.FORENSIC_OUTCOME_DONE,
        forensic_exam_at=stamp(incident + timedelta(hours=20)),
        follow_up_visits=[
            health_pb2.FollowUpVisitDone(
                visit=health_pb2.FOLLOW_UP_VISIT_TWO_WEEKS, at=stamp(incident + timedelta(days=15))
            )
        ],
    )
    view = care.health_view(record)
    # PEP asked for; EC and the examination recorded: each has its window.
    windows = {w.step.item: w for w in view.windows}
    assert set(windows) == {"pep", "emergency_contraception", "forensic_exam"}
    assert windows["pep"].closes == incident + timedelta(hours=72)
    assert windows["emergency_contraception"].closes == incident + timedelta(hours=120)
    assert windows["pep"].state(incident + timedelta(hours=71)) == "open"
    assert windows["pep"].state(incident + timedelta(hours=73)) == "closed"
    assert windows["forensic_exam"].state(incident + timedelta(hours=1)) == "recorded"
    # Forms: PEP any outcome, EC only given (she declined), the examination done: none.
    offered = {step.item: [c.code for c in choices] for step, choices in view.step_forms}
    assert offered == {"pep": ["started", "declined"], "emergency_contraception": ["given"]}
    # The visits fall due from the incident; the one done is not offered again.
    due = {v.choice.code: v.due for v in view.visits}
    assert due["two_weeks"] == incident + timedelta(days=14)
    assert due["six_months"] == incident + timedelta(days=182)
    assert [c.code for c in view.visits_open] == ["three_months", "six_months"]
    actions = care.actions("health", IN_SERVICE, record)
    assert actions == {"pep", "emergency-contraception", "certificate", "visit", "complete"}
    assert care.actions("health", PENDING, record) == frozenset()
    # Without an incident time, no window can be timed.
    unknown = care.health_view(health_pb2.CareRecord(care=[health_pb2.CARE_SERVICE_PEP]))
    assert [w.state(incident) for w in unknown.windows] == ["unknown"]
    assert all(v.due is None for v in unknown.visits)


def test_the_care_forms_send_codes_and_utc_times_never_a_default() -> None:
    record = health_pb2.CareRecord()
    with pytest.raises(forms.FormErrors) as problem:
        care.record_step("pep", "hlt-x", record, form(pep_at="soon"), "k")
    assert problem.value.errors == {"pep_outcome": forms.REQUIRED, "pep_at": forms.BAD_TIME}
    step = care.record_step(
        "forensic-exam",
        "hlt-x",
        record,
        form(forensic_exam_outcome="declined", forensic_exam_at="2025-07-01T10:30"),
        "k",
    )
    assert step.method == "RecordForensicExam"
    assert step.message.outcome == health_pb2.FORENSIC_OUTCOME_DECLINED
    assert step.message.at.ToDatetime(tzinfo=UTC) == datetime(2025, 7, 1, 9, 30, tzinfo=UTC)
    step = care.record_step("certificate", "hlt-x", record, form(itt_days="0"), "k")
    assert step.method == "IssueCertificate" and step.message.itt_days == 0
    assert step.message.HasField("issued_at")

    plan = psychosocial_pb2.SupportFile(
        plan=[psychosocial_pb2.PlanGoal(goal=psychosocial_pb2.SUPPORT_GOAL_HOUSING)]
    )
    with pytest.raises(forms.FormErrors) as problem:
        care.record_step("review", "psy-x", plan, form(progress_housing="finished"), "k")
    assert problem.value.errors == {"reviews": forms.UNKNOWN_CHOICE}
    # A goal not in the plan is not read from the form.
    with pytest.raises(forms.FormErrors) as problem:
        care.record_step("review", "psy-x", plan, form(progress_income="achieved"), "k")
    assert problem.value.errors == {"reviews": care.REVIEW_ONE}
    step = care.record_step("review", "psy-x", plan, form(progress_housing="in_progress"), "k")
    assert [(r.goal, r.progress) for r in step.message.reviews] == [
        (psychosocial_pb2.SUPPORT_GOAL_HOUSING, psychosocial_pb2.GOAL_PROGRESS_IN_PROGRESS)
    ]
    with pytest.raises(forms.FormErrors) as problem:
        care.record_step("session", "psy-x", plan, form(attendance="late"), "k")
    assert problem.value.errors == {"attendance": forms.UNKNOWN_CHOICE}
