"""Intake's domain rules without a server: risk triage, registration rules,
and what the journey is given."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from masar.contract import Need, Risk, Sector, ViolenceType
from masar.platform.errors import InvalidArgument
from services.intake import domain as d
from services.intake.domain import Answer, Indicator

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def answers(*yes: Indicator, unknown: tuple[Indicator, ...] = ()) -> dict[Indicator, Answer]:
    return {
        i: Answer.YES if i in yes else Answer.UNKNOWN if i in unknown else Answer.NO
        for i in Indicator
    }


# --- risk ------------------------------------------------------------------------


def test_no_indicator_is_low() -> None:
    result = d.assess_risk(answers(), None, at=NOW)
    assert (result.score, result.computed, result.level, result.critical) == (
        0,
        Risk.LOW,
        Risk.LOW,
        [],
    )


@pytest.mark.parametrize(
    ("yes", "score", "level"),
    [
        ((Indicator.PREGNANCY, Indicator.PERPETRATOR_ACCESS), 2, Risk.LOW),
        ((Indicator.WEAPON,), 3, Risk.MEDIUM),
        ((Indicator.THREATS_TO_KILL,), 3, Risk.MEDIUM),  # no access: not critical
        ((Indicator.ESCALATION, Indicator.SEPARATION, Indicator.STALKING), 6, Risk.HIGH),
        (
            (
                Indicator.WEAPON,
                Indicator.ESCALATION,
                Indicator.SEPARATION,
                Indicator.STALKING,
                Indicator.CHILDREN_THREATENED,
                Indicator.PREGNANCY,
            ),
            12,
            Risk.CRITICAL,
        ),
    ],
)
def test_weighted_score_gives_the_level(yes, score, level) -> None:
    result = d.assess_risk(answers(*yes), None, at=NOW)
    assert (result.score, result.computed) == (score, level)
    assert result.critical == []


def test_strangulation_alone_forces_critical() -> None:
    result = d.assess_risk(answers(Indicator.STRANGULATION), None, at=NOW)
    assert result.score == 3
    assert result.level is Risk.CRITICAL
    assert result.critical == [Indicator.STRANGULATION]


def test_threat_to_kill_with_access_forces_critical() -> None:
    result = d.assess_risk(
        answers(Indicator.THREATS_TO_KILL, Indicator.PERPETRATOR_ACCESS), None, at=NOW
    )
    assert result.score == 4
    assert result.level is Risk.CRITICAL
    assert set(result.critical) == {Indicator.THREATS_TO_KILL, Indicator.PERPETRATOR_ACCESS}


def test_unknown_answers_do_not_score() -> None:
    result = d.assess_risk(
        answers(unknown=(Indicator.STRANGULATION, Indicator.WEAPON)), None, at=NOW
    )
    assert result.level is Risk.LOW


def test_every_indicator_must_be_answered() -> None:
    partial = answers()
    del partial[Indicator.STALKING]
    with pytest.raises(InvalidArgument) as err:
        d.assess_risk(partial, None, at=NOW)
    assert err.value.field == "risk.checklist.stalking"


def test_override_raises_the_level_and_is_recorded() -> None:
    override = d.RiskOverride(level=Risk.HIGH, reason="  she fears for her life  ")
    result = d.assess_risk(answers(Indicator.WEAPON), override, at=NOW)
    assert result.computed is Risk.MEDIUM
    assert result.level is Risk.HIGH
    assert result.override == d.RiskOverride(level=Risk.HIGH, reason="she fears for her life")


@pytest.mark.parametrize("level", [Risk.LOW, Risk.MEDIUM])
def test_override_may_not_lower_or_keep_the_level(level) -> None:
    with pytest.raises(InvalidArgument) as err:
        d.assess_risk(
            answers(Indicator.WEAPON), d.RiskOverride(level=level, reason="judgement"), at=NOW
        )
    assert err.value.field == "risk.override.level"


def test_override_may_not_lower_a_critical_case() -> None:
    with pytest.raises(InvalidArgument) as err:
        d.assess_risk(
            answers(Indicator.STRANGULATION),
            d.RiskOverride(level=Risk.HIGH, reason="judgement"),
            at=NOW,
        )
    assert err.value.field == "risk.override.level"


def test_override_needs_a_reason() -> None:
    with pytest.raises(InvalidArgument) as err:
        d.assess_risk(answers(), d.RiskOverride(level=Risk.HIGH, reason="   "), at=NOW)
    assert err.value.field == "risk.override.reason"


# --- registration -----------------------------------------------------------------


def registration(**changes) -> d.Registration:
    base = d.Registration(
        idempotency_key="k-1",
        survivor=d.SurvivorProfile(
            region="fes-meknes",
            alias="Amina",
            birth_year=1994,
            languages=["ary", "fr"],
            contact=d.ContactDetails(phone="+212 600 000 000"),
            accompanying_children=2,
        ),
        incident=d.Incident(
            occurred_at=datetime(2026, 3, 9, 22, tzinfo=UTC),
            violence_type=ViolenceType.RAPE,
            contexts=[d.IncidentContext.INTIMATE_PARTNER],
        ),
        risk_answers=answers(Indicator.WEAPON),
        risk_override=None,
        needs=[Need.SHELTER, Need.LEGAL, Need.MEDICAL],
        accessibility_needs=["wheelchair"],
        legal_matters=[d.LegalMatter.PROTECTION_ORDER],
        consents=[d.ConsentScope.SHELTER],
    )
    return replace(base, **changes)


def test_a_valid_registration_is_normalised() -> None:
    reg = d.validate_registration(registration(), now=NOW)
    assert reg.incident.occurred_at == datetime(2026, 3, 9, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "now", "kept"),
    [
        # As people give it: minutes and seconds are dropped, not refused.
        (
            datetime(2026, 11, 28, 13, 21, 55, tzinfo=UTC),
            datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
            datetime(2026, 11, 28, 13, tzinfo=UTC),
        ),
        (
            datetime(2026, 3, 9, 22, 0, 5, 250_000, tzinfo=UTC),
            NOW,
            datetime(2026, 3, 9, 22, tzinfo=UTC),
        ),
        # Another offset: the hour it fell in, in UTC.
        (
            datetime(2026, 11, 28, 14, 21, tzinfo=timezone(timedelta(hours=1))),
            datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
            datetime(2026, 11, 28, 13, tzinfo=UTC),
        ),
        # Earlier in the current hour: that hour.
        (NOW - timedelta(minutes=20), NOW, datetime(2026, 3, 10, 14, tzinfo=UTC)),
        # Already on the hour: unchanged.
        (datetime(2026, 3, 9, 22, tzinfo=UTC), NOW, datetime(2026, 3, 9, 22, tzinfo=UTC)),
    ],
)
def test_the_incident_time_is_kept_to_the_hour(given, now, kept) -> None:
    incident = d.Incident(occurred_at=given, violence_type=ViolenceType.RAPE)
    reg = d.validate_registration(registration(incident=incident), now=now)
    assert reg.incident.occurred_at == kept
    assert reg.incident.occurred_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"incident": d.Incident(NOW + timedelta(hours=2), ViolenceType.RAPE)},
            "incident.occurred_at",
        ),
        # Ten minutes ahead is the future, even though its hour has begun.
        (
            {"incident": d.Incident(NOW + timedelta(minutes=10), ViolenceType.RAPE)},
            "incident.occurred_at",
        ),
        ({"legal_matters": []}, "legal_matters"),
        ({"employment_interests": ["knitting"]}, "employment_interests[0]"),
        ({"needs": [Need.SHELTER, Need.SHELTER]}, "needs[1]"),
        ({"accessibility_needs": ["jetpack"]}, "household.accessibility_needs[0]"),
        ({"consents": [d.ConsentScope.LEGAL, d.ConsentScope.LEGAL]}, "consents[1]"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
def test_registration_rules_name_the_field(changes, field) -> None:
    with pytest.raises(InvalidArgument) as err:
        d.validate_registration(registration(**changes), now=NOW)
    assert err.value.field == field


def test_the_journey_gets_facts_and_no_personal_data() -> None:
    facts = d.CaseFacts(
        case_id="0123456789abcdef",
        region="fes-meknes",
        risk=Risk.HIGH,
        needs=[Need.SHELTER, Need.LEGAL, Need.MEDICAL],
        declined=[],
        consents=d.initial_consents([d.ConsentScope.SHELTER]),
        incident_at=datetime(2026, 3, 9, 22, tzinfo=UTC),
        violence_type=ViolenceType.RAPE,
        accompanying_children=2,
        accessibility_needs=["wheelchair"],
        legal_matters=["protection_order"],
        employment_interests=[],
        languages=["ary"],
        holding_organisation_id="org-association-fes",
    )
    journey = d.journey_input(facts, opened_at=NOW)
    assert journey.consents == [Sector.SHELTER]
    assert journey.holding_organisation_id == "org-association-fes"
    assert journey.shelter is not None
    assert (journey.shelter.household_size, journey.shelter.children) == (3, 2)
    assert journey.legal is not None and journey.legal.matters == ["protection_order"]
    assert journey.employment is None  # not needed
    assert facts.needs_without_consent() == [Sector.LEGAL]


# --- trafficking (Law 27-14) --------------------------------------------------------


def trafficking(**survivor_changes) -> d.Registration:
    """A trafficking case with all that Law 27-14 asks for, then `survivor_changes`."""
    base = registration()
    survivor = replace(
        base.survivor,
        nationality="NG",
        migrant_status=d.MigrantStatus.IN_TRANSIT,
        languages=["en"],
        interpreter_needed=True,
    )
    incident = replace(base.incident, contexts=[d.IncidentContext.TRAFFICKING])
    return replace(
        base,
        survivor=replace(survivor, **survivor_changes),
        incident=incident,
        legal_matters=[],
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"nationality": None}, "survivor.nationality"),
        ({"migrant_status": None}, "survivor.migrant_status"),
        ({"languages": []}, "survivor.languages"),
    ],
)
def test_a_trafficking_case_needs_nationality_migrant_status_and_language(changes, field) -> None:
    with pytest.raises(InvalidArgument) as err:
        d.validate_registration(trafficking(**changes), now=NOW)
    assert err.value.field == field


def test_another_context_needs_none_of_them() -> None:
    reg = d.validate_registration(
        registration(survivor=d.SurvivorProfile(region="fes-meknes")), now=NOW
    )
    assert reg.survivor.nationality is None
    assert reg.survivor.interpreter_needed is None
    assert d.LegalMatter.TRAFFICKING not in reg.legal_matters


def test_a_trafficking_case_opens_legal_aid_on_trafficking() -> None:
    reg = d.validate_registration(trafficking(), now=NOW)
    assert reg.survivor.interpreter_needed is True
    # Added even when the officer named no matter (it satisfies the rule),
    # once, beside those she named.
    assert reg.legal_matters == [d.LegalMatter.TRAFFICKING]
    named = replace(
        trafficking(), legal_matters=[d.LegalMatter.RESIDENCY, d.LegalMatter.TRAFFICKING]
    )
    assert d.validate_registration(named, now=NOW).legal_matters == [
        d.LegalMatter.RESIDENCY,
        d.LegalMatter.TRAFFICKING,
    ]
    with_residency = replace(trafficking(), legal_matters=[d.LegalMatter.RESIDENCY])
    assert d.validate_registration(with_residency, now=NOW).legal_matters == [
        d.LegalMatter.RESIDENCY,
        d.LegalMatter.TRAFFICKING,
    ]

    facts = d.CaseFacts(
        case_id="0123456789abcdef",
        region=reg.survivor.region,
        risk=Risk.HIGH,
        needs=list(reg.needs),
        declined=[],
        consents=d.initial_consents([d.ConsentScope.LEGAL]),
        incident_at=reg.incident.occurred_at,
        violence_type=reg.incident.violence_type,
        accompanying_children=reg.survivor.accompanying_children,
        accessibility_needs=list(reg.accessibility_needs),
        legal_matters=[m.value for m in reg.legal_matters],
        employment_interests=[],
        languages=list(reg.survivor.languages),
    )
    journey = d.journey_input(facts, opened_at=NOW)
    assert journey.legal is not None
    assert journey.legal.matters == ["trafficking"]
    assert journey.legal.languages == ["en"]
