"""The intake pages' own logic, without services: form parsing and checks
(Morocco's local time to UTC, a missing violence type re-renders the form
naming the field and calls nothing, a service's INVALID_ARGUMENT lands
beside its field with the values kept), the requests each action makes, the
consent scripts, and the panel the case page includes. A minimal fake
Backend answers the calls (httpx.ASGITransport against build_app); the
end-to-end browser tests run the real stack."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.applications import Starlette

from console import consent_scripts
from console.app import build_app
from console.backend import Backend, Refused
from console.pages import intake
from console.sessions import COOKIE, Session
from masar import contract
from masar.platform.settings import ConsoleSettings
from masar.v1 import common_pb2, intake_pb2, journey_pb2, network_pb2

CASE_ID = "0123456789abcdef"
ORG = "org-aaaaaaaaaaaa"
OTHER_ORG = "org-bbbbbbbbbbbb"
CARE_UNIT_ORG = "org-cccccccccccc"
ALIAS = "Zineb-test-alias"
PHONE = "+212 600 000 001"


# --- a fake backend -------------------------------------------------------------------------


class _Stub:
    """`stubs.intake.RegisterCase` is the string "intake.RegisterCase"."""

    def __init__(self, service: str) -> None:
        self._service = service

    def __getattr__(self, name: str) -> str:
        return f"{self._service}.{name}"


@dataclass
class FakeBackend:
    answers: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    stubs: Any = field(
        default_factory=lambda: SimpleNamespace(
            **{s: _Stub(s) for s in ("intake", "journeys", "network", "shelter", "legal")}
        )
    )

    async def call(self, session: Session, service: str, method: str, request: Any) -> Any:
        self.calls.append((method, request))
        answer = self.answers[method]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer

    async def close(self) -> None:
        return None

    def called(self, method: str) -> list[Any]:
        return [request for name, request in self.calls if name == method]


def organisation(org_id: str, name: str, kind: int, region: str = "fes-meknes") -> Any:
    return network_pb2.Organisation(
        organisation_id=org_id,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        region=region,
        status=network_pb2.ORGANISATION_STATUS_ACTIVE,
    )


ORGANISATIONS = network_pb2.ListOrganisationsResponse(
    organisations=[
        organisation(ORG, "Association Annour", network_pb2.ORGANISATION_KIND_ASSOCIATION),
        organisation(
            OTHER_ORG, "Centre Al Amal", network_pb2.ORGANISATION_KIND_MULTIFUNCTIONAL_CENTRE
        ),
        organisation(
            CARE_UNIT_ORG, "Unité CHU Fès", network_pb2.ORGANISATION_KIND_HOSPITAL_CARE_UNIT
        ),
    ]
)


def registered(request: intake_pb2.RegisterCaseRequest) -> intake_pb2.RegisterCaseResponse:
    return intake_pb2.RegisterCaseResponse(
        case=intake_pb2.Case(summary=intake_pb2.CaseSummary(case_id=CASE_ID)),
        journey_start=common_pb2.DELIVERY_STATE_DELIVERED,
    )


@dataclass
class Console:
    app: Starlette
    backend: FakeBackend
    session: Session
    client: httpx.AsyncClient

    async def post(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        body = {**data, "csrf": self.session.csrf} if csrf else data
        return await self.client.post(path, data=body)

    def flashes(self) -> list[tuple[str, str]]:
        return list(self.session.flashes)


@pytest.fixture
async def make_console() -> AsyncIterator[Callable[..., Any]]:
    clients: list[httpx.AsyncClient] = []

    async def make(
        role: str = "intake_officer",
        *,
        language: str = "en",
        organisation_id: str = ORG,
        answers: dict[str, Any] | None = None,
    ) -> Console:
        backend = FakeBackend(answers=dict(answers or {}))
        app = build_app(ConsoleSettings.from_env({}), backend=cast(Backend, backend))
        session = app.state.console.sessions.new(language)
        session.access_token = "token"
        session.access_expires_at = datetime.now(UTC) + timedelta(hours=1)
        session.role = role
        session.organisation_id = organisation_id
        session.region = "fes-meknes"
        session.username = "officer"
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://console.test",
            cookies={COOKIE: session.sid},
        )
        clients.append(client)
        return Console(app, backend, session, client)

    yield make
    for client in clients:
        await client.aclose()


def full_form(**changes: Any) -> dict[str, Any]:
    """A complete registration, as the browser sends it."""
    form: dict[str, Any] = {
        "idempotency_key": "web-" + "1" * 32,
        "script_language": "ary",
        "region": "fes-meknes",
        "incident_at": "2026-01-15T22:00",
        "violence_type": "physical_assault",
        **{f"risk_{name}": "no" for name in intake.RISK_QUESTIONS},
        "risk_threats_to_kill": "yes",
        "override_level": "",
        "override_reason": "",
        "children": "2",
        "birth_year": "1995",
        "nationality": "ma",
        "migrant_status": "",
        "languages_other": "",
        "alias": ALIAS,
        "phone": PHONE,
        "safe_contact": "after six",
        "consents": ["shelter", "reporting"],
        "needs": ["shelter", "legal"],
        "contexts": ["intimate_partner"],
        "accessibility": ["ground_floor"],
        "legal_matters": ["protection_order"],
        "employment_interests": ["sewing"],
        "languages": ["fr"],
    }
    form.update(changes)
    return form


def field_error(html: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="{re.escape(name)}-error">(.*?)</p>', html, re.S)
    assert found, f"no error shown beside {name}"
    return found.group(1)


# --- pure parts -----------------------------------------------------------------------------


def test_local_time_is_morocco_time_sent_in_utc() -> None:
    # Winter: UTC+1; around Ramadan (here February-March 2026): UTC+0.
    assert intake.local_to_utc("2026-01-15T22:00") == datetime(2026, 1, 15, 21, tzinfo=UTC)
    assert intake.local_to_utc("2026-03-05T22:00") == datetime(2026, 3, 5, 22, tzinfo=UTC)
    assert intake.local_input(datetime(2026, 7, 1, 8, tzinfo=UTC)) == "2026-07-01T09:00"
    for bad in ("", "yesterday", "2026-13-01T10:00", "2026-01-15T22:00+01:00"):
        with pytest.raises(ValueError):
            intake.local_to_utc(bad)


def test_service_field_paths_name_form_fields() -> None:
    assert intake.form_field("risk.checklist.weapon") == "risk_weapon"
    assert intake.form_field("incident.occurred_at") == "incident_at"
    assert intake.form_field("incident.violence_type") == "violence_type"
    assert intake.form_field("survivor.contact.phone") == "phone"
    assert intake.form_field("survivor.contact.safe_contact_instructions") == "safe_contact"
    assert intake.form_field("survivor.languages[2]") == "languages"
    assert intake.form_field("household.accessibility_needs[0]") == "accessibility"
    assert intake.form_field("risk.override.reason") == "override_reason"
    assert intake.form_field("holding_organisation_id") == "holding_organisation_id"
    assert intake.form_field("idempotency_key") == ""
    assert intake.form_field("risk.checklist.unknown") == ""


def test_vocabularies_match_the_contract_and_the_api() -> None:
    assert list(intake.REGIONS) == list(contract.REGIONS)
    assert list(intake.ACCESSIBILITY) == list(contract.ACCESSIBILITY_FEATURES)
    assert list(intake.PROGRAMMES) == list(contract.PROGRAMME_KINDS)
    assert set(intake.VIOLENCE_TYPES) == {v.value for v in contract.ViolenceType}
    checklist = [f.name for f in intake_pb2.RiskChecklist.DESCRIPTOR.fields]
    assert list(intake.RISK_QUESTIONS) == checklist
    assert list(intake.CONSENTS) == list(consent_scripts.SCOPE_SLUGS)
    for name in ("IncidentContext", "MigrantStatus", "FollowUpChannel", "ClosureReason"):
        enum = getattr(intake_pb2, name)
        assert len(enum.keys()) - 1 == len(
            {
                "IncidentContext": intake.CONTEXTS,
                "MigrantStatus": intake.MIGRANT_STATUSES,
                "FollowUpChannel": intake.FOLLOW_UP_CHANNELS,
                "ClosureReason": intake.CLOSURE_REASONS,
            }[name]
        ), f"every {name} has a label"


def test_a_full_form_makes_the_registration() -> None:
    form = intake.CaseForm(
        values={k: v for k, v in full_form().items() if k in intake.SINGLE_FIELDS},  # single values
        choices={k: list(full_form()[k]) for k in intake.MULTI_FIELDS},
    )
    now = datetime(2026, 2, 1, tzinfo=UTC)
    request = intake.build_registration(form, care_unit=False, now=now)
    assert form.errors == {}
    assert request is not None
    assert request.incident.occurred_at.ToDatetime(tzinfo=UTC) == datetime(
        2026, 1, 15, 21, tzinfo=UTC
    )
    assert request.incident.violence_type == intake_pb2.VIOLENCE_TYPE_PHYSICAL_ASSAULT
    assert list(request.incident.contexts) == [intake_pb2.INCIDENT_CONTEXT_INTIMATE_PARTNER]
    assert request.risk.checklist.threats_to_kill == intake_pb2.RISK_ANSWER_YES
    assert request.risk.checklist.weapon == intake_pb2.RISK_ANSWER_NO
    assert not request.risk.HasField("override")
    assert list(request.consents) == [
        intake_pb2.CONSENT_SCOPE_SHELTER,
        intake_pb2.CONSENT_SCOPE_DEIDENTIFIED_REPORTING,
    ]
    assert list(request.needs) == [common_pb2.SECTOR_SHELTER, common_pb2.SECTOR_LEGAL]
    assert list(request.household.accessibility_needs) == ["ground_floor"]
    assert list(request.employment_interests) == ["sewing"]
    # The language the script was read in is one she speaks.
    assert list(request.survivor.languages) == ["fr", "ary"]
    assert request.survivor.nationality == "MA"
    assert request.survivor.accompanying_children == 2
    assert request.survivor.birth_year == 1995
    assert request.survivor.alias == ALIAS
    assert request.survivor.contact.phone == PHONE
    assert request.survivor.region == "fes-meknes"
    assert request.holding_organisation_id == ""
    assert request.idempotency_key == "web-" + "1" * 32


def _form(**changes: Any) -> intake.CaseForm:
    sent = full_form(**changes)
    return intake.CaseForm(
        values={k: sent.get(k, "") for k in intake.SINGLE_FIELDS},
        choices={k: list(sent.get(k, [])) for k in intake.MULTI_FIELDS},
    )


def test_the_console_refuses_what_it_can_check_itself() -> None:
    now = datetime(2026, 2, 1, tzinfo=UTC)
    cases = {
        "violence_type": _form(violence_type=""),
        "incident_at": _form(incident_at="not a time"),
        "region": _form(region="atlantis"),
        "risk_weapon": _form(risk_weapon=""),
        "override_reason": _form(override_level="critical"),
        "children": _form(children="21"),
        "legal_matters": _form(legal_matters=[]),
        "languages_other": _form(languages_other="Wolof"),
        "phone": _form(phone="call me"),
    }
    for name, sent in cases.items():
        assert intake.build_registration(sent, care_unit=False, now=now) is None
        assert list(sent.errors) == [name], name
    future = _form(incident_at="2026-02-01T05:00")
    assert intake.build_registration(future, care_unit=False, now=now) is None
    assert future.errors == {"incident_at": intake.NOT_FUTURE}
    minutes = _form(incident_at="2026-01-15T22:30")
    floored = intake.build_registration(minutes, care_unit=False, now=now)
    assert floored is not None and not minutes.errors and minutes.floored
    # 22:30 in Casablanca (UTC+1 in January) is 21:30 UTC: kept as 21:00.
    assert floored.incident.occurred_at.ToDatetime(tzinfo=UTC).hour == 21
    assert floored.incident.occurred_at.ToDatetime(tzinfo=UTC).minute == 0


def test_an_override_raises_the_level_with_its_reason() -> None:
    sent = _form(override_level="critical", override_reason="he has a weapon at home")
    request = intake.build_registration(sent, care_unit=False, now=datetime(2026, 2, 1, tzinfo=UTC))
    assert request is not None
    assert request.risk.override.level == common_pb2.RISK_LEVEL_CRITICAL
    assert request.risk.override.reason == "he has a weapon at home"


def test_a_care_unit_chooses_a_listed_holder() -> None:
    now = datetime(2026, 2, 1, tzinfo=UTC)
    missing = _form()
    assert intake.build_registration(missing, care_unit=True, holders=[ORG], now=now) is None
    assert missing.errors == {"holding_organisation_id": intake.CHOOSE_HOLDER}
    unlisted = _form(holding_organisation_id=CARE_UNIT_ORG)
    assert intake.build_registration(unlisted, care_unit=True, holders=[ORG], now=now) is None
    assert unlisted.errors == {"holding_organisation_id": intake.CHOOSE_LISTED}
    chosen = _form(holding_organisation_id=ORG)
    request = intake.build_registration(chosen, care_unit=True, holders=[ORG], now=now)
    assert request is not None and request.holding_organisation_id == ORG


# --- the consent scripts --------------------------------------------------------------------


def _scripts_of(text: str) -> set[str]:
    """The writing systems of the letters of `text` (ARABIC, TIFINAGH, LATIN)."""
    return {unicodedata.name(ch).split()[0] for ch in text if ch.isalpha()}


def test_consent_scripts_are_in_her_language_and_script() -> None:
    expected = {"ary": ("ARABIC", "rtl"), "zgh": ("TIFINAGH", "ltr"), "ar": ("ARABIC", "rtl")}
    expected["fr"] = ("LATIN", "ltr")
    assert list(consent_scripts.SCRIPTS) == ["ary", "zgh", "ar", "fr"]
    for code, script in consent_scripts.SCRIPTS.items():
        writing, direction = expected[code]
        assert script.direction == direction
        assert [scope for scope, _ in script.scopes] == list(consent_scripts.SCOPE_SLUGS)
        paragraphs = [
            script.name,
            script.title,
            *script.opening,
            *(text for _, text in script.scopes),
            *script.rights,
            script.question,
        ]
        for paragraph in paragraphs:
            assert paragraph.strip(), code
            assert _scripts_of(paragraph) == {writing}, (code, paragraph)
    assert consent_scripts.default_script("ar") == "ar"
    assert consent_scripts.default_script("fr") == "fr"
    assert consent_scripts.default_script("zgh") == "zgh"
    assert consent_scripts.default_script("en") == "ary"


# --- the pages ------------------------------------------------------------------------------


async def test_the_form_shows_the_four_scripts_the_console_language_open(
    make_console: Callable[..., Any],
) -> None:
    console = await make_console(language="fr")
    response = await console.client.get("/cases/new")
    assert response.status_code == 200
    html = response.text
    for code, direction in (("ary", "rtl"), ("zgh", "ltr"), ("ar", "rtl"), ("fr", "ltr")):
        assert f'<div class="script" lang="{code}" dir="{direction}">' in html
    assert re.search(r'<details class="consent-script" data-script="fr" open>', html)
    assert not re.search(r'data-script="(ary|zgh|ar)" open', html)
    assert 'name="violence_type" required' in html
    assert '<option value="" selected' not in html  # no type chosen by default
    assert 'name="holding_organisation_id"' not in html  # an officer holds what she registers
    assert console.backend.calls == []


async def test_a_missing_violence_type_names_the_field_and_calls_nothing(
    make_console: Callable[..., Any],
) -> None:
    console = await make_console()
    response = await console.post("/cases/new", full_form(violence_type=""))
    assert response.status_code == 400
    assert console.backend.calls == []
    html = response.text
    assert field_error(html, "violence_type") == intake.CHOOSE_VIOLENCE
    assert 'id="violence_type" name="violence_type" required aria-invalid="true"' in html
    # Every value is kept, personal data included (in this POST answer only).
    assert f'value="{ALIAS}"' in html
    assert 'value="2026-01-15T22:00"' in html
    assert '<option value="yes" selected>' in html
    assert 'value="shelter" checked' in html
    assert ALIAS not in html.split("<main")[0]  # not in the title or the head


async def test_a_refused_value_is_shown_beside_its_field(make_console: Callable[..., Any]) -> None:
    refusal = Refused(
        "invalid", "risk.checklist.weapon: must be answered", field="risk.checklist.weapon"
    )
    console = await make_console(answers={"intake.RegisterCase": refusal})
    response = await console.post("/cases/new", full_form())
    assert response.status_code == 400
    assert len(console.backend.called("intake.RegisterCase")) == 1
    error = field_error(response.text, "risk_weapon")
    assert intake.REFUSED_VALUE in error and "must be answered" in error
    assert f'value="{ALIAS}"' in response.text


async def test_registration_sends_utc_and_goes_to_the_case(
    make_console: Callable[..., Any],
) -> None:
    console = await make_console(answers={"intake.RegisterCase": registered})
    response = await console.post("/cases/new", full_form())
    assert response.status_code == 303
    assert response.headers["location"] == f"/cases/{CASE_ID}"
    (sent,) = console.backend.called("intake.RegisterCase")
    assert sent.incident.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 15, 21, tzinfo=UTC)
    assert ("ok", "Case registered.") in console.flashes()
    assert all(ALIAS not in message for _, message in console.flashes())


async def test_the_form_needs_its_csrf_token(make_console: Callable[..., Any]) -> None:
    console = await make_console(answers={"intake.RegisterCase": registered})
    response = await console.post("/cases/new", full_form(), csrf=False)
    assert response.status_code == 403
    assert console.backend.calls == []


async def test_a_care_unit_chooses_among_her_regions_organisations(
    make_console: Callable[..., Any],
) -> None:
    console = await make_console(
        "care_unit_officer",
        organisation_id=CARE_UNIT_ORG,
        answers={"network.ListOrganisations": ORGANISATIONS, "intake.RegisterCase": registered},
    )
    page = await console.client.get("/cases/new")
    (listed,) = console.backend.called("network.ListOrganisations")
    assert listed.region == "fes-meknes"
    html = page.text
    assert f'<option translate="no" value="{ORG}">' in html
    assert f'<option translate="no" value="{OTHER_ORG}">' in html
    assert CARE_UNIT_ORG not in html  # not a care unit, not her own
    refused = await console.post("/cases/new", full_form())
    assert refused.status_code == 400
    assert field_error(refused.text, "holding_organisation_id") == intake.CHOOSE_HOLDER
    done = await console.post("/cases/new", full_form(holding_organisation_id=OTHER_ORG))
    assert done.status_code == 303
    (sent,) = console.backend.called("intake.RegisterCase")
    assert sent.holding_organisation_id == OTHER_ORG


async def test_the_case_list_shows_no_personal_data(make_console: Callable[..., Any]) -> None:
    created = Timestamp()
    created.FromDatetime(datetime(2026, 1, 16, 9, tzinfo=UTC))
    cases = intake_pb2.ListCasesResponse(
        cases=[
            intake_pb2.CaseSummary(
                case_id=CASE_ID,
                region="fes-meknes",
                risk=common_pb2.RISK_LEVEL_CRITICAL,
                status=intake_pb2.CASE_STATUS_OPEN,
                journey=intake_pb2.JOURNEY_STATE_STARTED,
                created_at=created,
            )
        ],
        next_page_token="next-page",
    )
    console = await make_console(answers={"intake.ListCases": cases})
    response = await console.client.get("/cases")
    assert response.status_code == 200
    html = response.text
    assert f'<a href="/cases/{CASE_ID}" dir="ltr">{CASE_ID}</a>' in html
    assert '<td data-label="Region">Fès-Meknès</td>' in html
    assert '<span class="badge critical">Critical</span>' in html
    assert "Running" in html and "Open" in html
    assert 'class="stack"' in html
    assert "/cases?page=next-page" in html
    older = await console.client.get("/cases?page=next-page")
    assert older.status_code == 200
    assert [r.page_token for r in console.backend.called("intake.ListCases")] == [
        "",
        "next-page",
    ]


async def test_other_roles_may_not_register(make_console: Callable[..., Any]) -> None:
    console = await make_console("shelter_staff")
    assert (await console.client.get("/cases/new")).status_code == 403
    assert (await console.post("/cases/new", full_form())).status_code == 403
    care_unit = await make_console("care_unit_officer", organisation_id=CARE_UNIT_ORG)
    response = await care_unit.post(f"/cases/{CASE_ID}/closure", {"reason": "needs_met"})
    assert response.status_code == 403  # a care unit follows a case, never changes it
    assert care_unit.backend.calls == []


# --- the case actions -----------------------------------------------------------------------


def changed(request: Any) -> Any:
    return SimpleNamespace(delivery=common_pb2.DELIVERY_STATE_DELIVERED)


async def test_a_follow_up_is_recorded_in_utc(make_console: Callable[..., Any]) -> None:
    console = await make_console(answers={"journeys.RecordFollowUp": changed})
    key = "web-" + "2" * 32
    response = await console.post(
        f"/cases/{CASE_ID}/follow-up",
        {
            "contacted_at": "2026-01-16T10:30",
            "channel": "home_visit",
            "notes": "ok",
            "idempotency_key": key,
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/cases/{CASE_ID}"
    (sent,) = console.backend.called("journeys.RecordFollowUp")
    assert sent.case_id == CASE_ID
    assert sent.contacted_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 16, 9, 30, tzinfo=UTC)
    assert sent.channel == intake_pb2.FOLLOW_UP_CHANNEL_HOME_VISIT
    assert sent.idempotency_key == key
    assert ("ok", "Follow-up recorded.") in console.flashes()


async def test_a_follow_up_without_a_channel_calls_nothing(
    make_console: Callable[..., Any],
) -> None:
    console = await make_console()
    response = await console.post(f"/cases/{CASE_ID}/follow-up", {"channel": ""})
    assert response.status_code == 303
    assert console.backend.calls == []
    assert ("error", intake.CHOOSE_CHANNEL) in console.flashes()
    future = await console.post(
        f"/cases/{CASE_ID}/follow-up", {"channel": "phone", "contacted_at": "2999-01-01T10:00"}
    )
    assert future.status_code == 303
    assert console.backend.calls == []


async def test_withdrawing_a_consent_goes_through_the_journey_api(
    make_console: Callable[..., Any],
) -> None:
    console = await make_console(answers={"journeys.ChangeConsent": changed})
    response = await console.post(f"/cases/{CASE_ID}/consent/withdraw", {"scope": "legal"})
    assert response.status_code == 303
    (sent,) = console.backend.called("journeys.ChangeConsent")
    assert sent.scope == intake_pb2.CONSENT_SCOPE_LEGAL
    assert sent.change == journey_pb2.CONSENT_CHANGE_KIND_WITHDRAW
    assert intake.KEY.fullmatch(sent.idempotency_key)


async def test_closure_is_requested_with_its_reason(make_console: Callable[..., Any]) -> None:
    console = await make_console(answers={"journeys.RequestClosure": changed})
    response = await console.post(f"/cases/{CASE_ID}/closure", {"reason": "needs_met"})
    assert response.status_code == 303
    (sent,) = console.backend.called("journeys.RequestClosure")
    assert sent.reason == intake_pb2.CLOSURE_REASON_NEEDS_MET


async def test_a_transfer_needs_her_consent_and_a_network_organisation(
    make_console: Callable[..., Any],
) -> None:
    found = network_pb2.GetOrganisationResponse(
        organisation=organisation(
            OTHER_ORG, "Centre Al Amal", network_pb2.ORGANISATION_KIND_MULTIFUNCTIONAL_CENTRE
        )
    )
    console = await make_console(
        answers={"network.GetOrganisation": found, "intake.RequestTransfer": changed}
    )
    asked = {"to_organisation_id": OTHER_ORG, "reason": "closer_to_home"}
    response = await console.post(f"/cases/{CASE_ID}/transfer", asked)
    assert response.status_code == 303
    assert console.backend.calls == []
    assert ("error", intake.TRANSFER_CONSENT) in console.flashes()
    response = await console.post(
        f"/cases/{CASE_ID}/transfer", {**asked, "survivor_consents": "yes"}
    )
    assert response.status_code == 303
    (sent,) = console.backend.called("intake.RequestTransfer")
    assert sent.to_organisation_id == OTHER_ORG
    assert sent.reason == intake_pb2.TRANSFER_REASON_CLOSER_TO_HOME
    assert sent.survivor_consents is True


async def test_a_refused_change_goes_back_with_a_notice(make_console: Callable[..., Any]) -> None:
    refusal = Refused("invalid", "contacted_at: must not be in the future", field="contacted_at")
    console = await make_console(answers={"journeys.RecordFollowUp": refusal})
    response = await console.post(f"/cases/{CASE_ID}/follow-up", {"channel": "phone"})
    assert response.status_code == 303
    assert response.headers["location"] == f"/cases/{CASE_ID}"
    assert ("error", intake.NOT_RECORDED) in console.flashes()


async def test_an_action_on_a_malformed_case_id_is_not_found(
    make_console: Callable[..., Any],
) -> None:
    console = await make_console()
    response = await console.post("/cases/not-a-case/closure", {"reason": "needs_met"})
    assert response.status_code == 404
    assert console.backend.calls == []


# --- the panel the case page includes -------------------------------------------------------


def follow_up_view(request: Any) -> intake_pb2.GetCaseFollowUpResponse:
    return intake_pb2.GetCaseFollowUpResponse(
        follow_up=intake_pb2.CaseFollowUp(
            summary=intake_pb2.CaseSummary(
                case_id=CASE_ID,
                region="fes-meknes",
                status=intake_pb2.CASE_STATUS_OPEN,
                holding_organisation_id=ORG,
            ),
            consents=[
                intake_pb2.Consent(
                    scope=intake_pb2.CONSENT_SCOPE_DEIDENTIFIED_REPORTING,
                    state=intake_pb2.CONSENT_STATE_GRANTED,
                ),
                intake_pb2.Consent(
                    scope=intake_pb2.CONSENT_SCOPE_SHELTER, state=intake_pb2.CONSENT_STATE_GRANTED
                ),
                intake_pb2.Consent(
                    scope=intake_pb2.CONSENT_SCOPE_LEGAL, state=intake_pb2.CONSENT_STATE_WITHDRAWN
                ),
            ],
        )
    )


async def test_the_panel_offers_what_can_be_done_now(make_console: Callable[..., Any]) -> None:
    console = await make_console(
        answers={
            "intake.GetCaseFollowUp": follow_up_view,
            "intake.ListTransfers": intake_pb2.ListTransfersResponse(),
            "network.ListOrganisations": ORGANISATIONS,
        }
    )
    request = SimpleNamespace(app=console.app, state=SimpleNamespace(session=console.session))
    context = await intake.intake_panel(cast(Any, request), CASE_ID)
    panel = context["intake"]
    assert panel.may_change
    assert [slug for slug, _ in panel.granted] == ["shelter", "reporting"]
    assert [o.organisation_id for o in panel.transfer_targets] == [OTHER_ORG]
    assert len(set(panel.keys.values())) == 4
    template = console.app.state.console.templates.get_template("_intake_actions.html")
    html = template.render(case_id=CASE_ID, csrf="csrf-token", _=lambda m, **v: m, **context)
    for path in ("follow-up", "consent/withdraw", "closure", "transfer"):
        assert f'action="/cases/{CASE_ID}/{path}"' in html
    assert html.count('name="csrf" value="csrf-token"') == 4
    assert 'data-confirm="Withdraw this consent?' in html
    assert '<option value="shelter">Shelter</option>' in html
    assert '<option value="legal">' not in html  # withdrawn already
    care_unit = await make_console("care_unit_officer", organisation_id=CARE_UNIT_ORG)
    request.state.session = care_unit.session
    context = await intake.intake_panel(cast(Any, request), CASE_ID)
    assert context["intake"].may_change is False
    assert template.render(case_id=CASE_ID, csrf="c", _=lambda m, **v: m, **context).strip() == ""


def test_the_intake_service_accepts_what_the_form_builds() -> None:
    """The service's own conversion and rules (no database), so the form and
    the API cannot drift apart unnoticed."""
    from services.intake import domain
    from services.intake.servicer import _registration

    now = datetime(2026, 2, 1, tzinfo=UTC)
    sent = _form(
        override_level="critical",
        override_reason="a weapon at home",
        languages_other="wo, bm",
        migrant_status="in_transit",
        risk_perpetrator_access="unknown",
    )
    request = intake.build_registration(sent, care_unit=False, now=now)
    assert request is not None
    registration = domain.validate_registration(_registration(request), now=now)
    assert registration.survivor.languages == ["fr", "ary", "wo", "bm"]
    assert registration.incident.occurred_at == datetime(2026, 1, 15, 21, tzinfo=UTC)
    assessment = domain.assess_risk(registration.risk_answers, registration.risk_override, at=now)
    assert assessment.level is contract.Risk.CRITICAL
