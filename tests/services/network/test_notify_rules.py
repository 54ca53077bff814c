"""Notifications' pure parts: who is told what, the open items, backoff, the
digest's day, the webhook signature and its reference verifier, SMTP URLs,
the texts in three languages and their compiled catalogs."""

from __future__ import annotations

import gettext
import io
import time
from datetime import UTC, datetime, timedelta
from email import message_from_string, policy
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from masar.contract import SECTOR_TASK_QUEUES
from masar.contract.notify import NETWORK_TASK_QUEUE, NotifyEvent, NotifyKind
from masar.platform.errors import InvalidArgument
from masar.v1 import network_pb2 as pb
from services.network.audience import (
    DIGEST_ZONE,
    Audience,
    DeliveryPolicy,
    OpenItem,
    audience,
    check_event,
    digest_due,
    digest_lines,
    item_key,
)
from services.network.domain import AccountRole
from services.network.mail import build_message, message_id, parse_smtp_url
from services.network.texts import LANGUAGES, LOCALE_DIR, SUBJECTS, NoticeView, render
from services.network.webhooks import signature, verify_signature

PROVIDER = "org-aaaaaaaaaaaa"
HOLDER = "org-bbbbbbbbbbbb"
RECEIVER = "org-cccccccccccc"
FES = "fes-meknes"


def make(kind: NotifyKind, **fields: object) -> NotifyEvent:
    values: dict[str, object] = {
        "idempotency_key": "case-1:ref-1:x",
        "case_id": "case-1",
        "region": FES,
        "referral_id": "ref-1",
        "sector": "shelter",
        "provider_organisation_id": PROVIDER,
        "holding_organisation_id": HOLDER,
    }
    values.update(fields)
    return NotifyEvent(kind=kind, **values)  # type: ignore[arg-type]


def test_the_contract_names_the_networks_task_queue():
    assert SECTOR_TASK_QUEUES["network"] == NETWORK_TASK_QUEUE


def test_who_is_told_what():
    coordinators = Audience(frozenset({AccountRole.COORDINATOR}), region=FES)
    staff = Audience(frozenset({AccountRole.SHELTER_STAFF}), organisation_id=PROVIDER)
    supervisors = Audience(frozenset({AccountRole.SUPERVISOR}), organisation_id=HOLDER)
    officers = Audience(frozenset({AccountRole.INTAKE_OFFICER}), organisation_id=HOLDER)
    holders = Audience(
        frozenset({AccountRole.INTAKE_OFFICER, AccountRole.SUPERVISOR}), organisation_id=HOLDER
    )
    assert audience(make(NotifyKind.NEW_REFERRAL)) == [staff]
    assert audience(make(NotifyKind.REMINDER)) == [staff]
    legal = Audience(frozenset({AccountRole.LEGAL_AID}), organisation_id=PROVIDER)
    assert audience(make(NotifyKind.REMINDER, sector="legal")) == [legal]
    assert audience(make(NotifyKind.ESCALATION)) == [coordinators]
    assert audience(make(NotifyKind.REROUTED)) == [coordinators]
    assert audience(make(NotifyKind.REGIONAL)) == [coordinators, supervisors]
    assert audience(make(NotifyKind.EXPIRED)) == [coordinators, supervisors]
    assert audience(make(NotifyKind.CLINICAL_WINDOW)) == [coordinators, officers]
    assert audience(make(NotifyKind.BREACH, sector="legal")) == [coordinators, holders]
    assert audience(make(NotifyKind.BREACH, holding_organisation_id="")) == [coordinators]
    assert audience(make(NotifyKind.REFERRAL_DECIDED)) == [holders]
    transfer = make(NotifyKind.TRANSFER_REQUESTED, receiving_organisation_id=RECEIVER)
    receivers = Audience(holders.roles, organisation_id=RECEIVER)
    assert audience(transfer) == [holders, receivers]
    assert audience(make(NotifyKind.CLOSURE_REQUESTED)) == [coordinators]
    assert audience(make(NotifyKind.RESOLVED)) == []
    # A provider that belongs to no organisation: nobody (an escalation follows).
    assert audience(make(NotifyKind.NEW_REFERRAL, provider_organisation_id="")) == []


def test_items_are_keyed_by_their_subject():
    assert item_key(make(NotifyKind.REMINDER)) == "referral:ref-1"
    assert item_key(make(NotifyKind.TRANSFER_REQUESTED, referral_id="", transfer_id="trf-1")) == (
        "transfer:trf-1"
    )
    assert item_key(make(NotifyKind.CLINICAL_WINDOW, referral_id="")) == "clinical"
    assert item_key(make(NotifyKind.CLOSURE_REQUESTED, referral_id="")) == "closure"
    assert item_key(make(NotifyKind.RESOLVED, referral_id="")) == ""


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "party"}, "kind"),
        ({"kind": NotifyKind.DIGEST}, "kind"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"case_id": "Zineb El Amrani"}, "case_id"),
        ({"region": "atlantis"}, "region"),
        ({"provider_organisation_id": "acme"}, "provider_organisation_id"),
        ({"sector": "cooking"}, "sector"),
        ({"sector": ""}, "sector"),
        ({"rung": 12}, "rung"),
    ],
)
def test_malformed_events_are_refused(fields, field):
    kind = fields.pop("kind", NotifyKind.REMINDER)
    with pytest.raises(InvalidArgument) as refused:
        check_event(make(kind, **fields))
    assert refused.value.field == field


def test_backoff_doubles_up_to_its_cap():
    policy = DeliveryPolicy(base=timedelta(seconds=5), cap=timedelta(minutes=1))
    assert [policy.backoff(n).total_seconds() for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert policy.backoff(10_000) == timedelta(minutes=1)


def test_the_digest_is_due_once_a_day_at_a_local_hour():
    # 06:59 and 07:00 in Casablanca.
    before = datetime(2026, 3, 2, 6, 59, tzinfo=DIGEST_ZONE)
    at = datetime(2026, 3, 2, 7, 0, tzinfo=DIGEST_ZONE)
    assert not digest_due(now=before, hour=7, last_sent_on=None)
    assert digest_due(now=at, hour=7, last_sent_on=None)
    assert digest_due(now=at, hour=7, last_sent_on="2026-03-01")
    assert not digest_due(now=at, hour=7, last_sent_on="2026-03-02")


def test_digest_lines_are_overdue_first_then_due_today():
    now = datetime(2026, 3, 2, 9, 0, tzinfo=DIGEST_ZONE).astimezone(UTC)

    def item(case: str, deadline: datetime | None) -> OpenItem:
        return OpenItem(
            case_id=case,
            item_key="k",
            kind="reminder",
            referral_id="",
            sector="",
            deadline=deadline,
        )

    tonight = datetime(2026, 3, 2, 23, 30, tzinfo=DIGEST_ZONE)
    tomorrow = datetime(2026, 3, 3, 0, 30, tzinfo=DIGEST_ZONE)
    lines = digest_lines(
        [
            item("due", tonight),
            item("later", tomorrow),
            item("late", now - timedelta(days=2)),
            item("none", None),
        ],
        now,
    )
    assert [(line.case_id, line.overdue) for line in lines] == [("late", True), ("due", False)]


def test_the_reference_verifier():
    secret = "whsec_test"
    body = b'{"delivery_id":"dlv-1"}'
    now = int(time.time())
    headers = {
        "X-Masar-Timestamp": str(now),
        "X-Masar-Signature": signature(secret, str(now), body),
    }
    assert verify_signature(secret, body, headers)
    assert verify_signature(secret, body, {k.lower(): v for k, v in headers.items()})
    assert not verify_signature("whsec_other", body, headers)
    assert not verify_signature(secret, body + b" ", headers)
    assert not verify_signature(secret, body, {**headers, "X-Masar-Timestamp": str(now - 301)})
    assert not verify_signature(secret, body, {"X-Masar-Signature": headers["X-Masar-Signature"]})
    # The timestamp is signed: moving it forward breaks the signature.
    assert not verify_signature(secret, body, {**headers, "X-Masar-Timestamp": str(now + 1)})


def test_smtp_urls():
    plain = parse_smtp_url("smtp://127.0.0.1:2525")
    assert (plain.tls, plain.host, plain.port, plain.username) == (False, "127.0.0.1", 2525, "")
    secure = parse_smtp_url("smtps://alerts%40masar.ma:p%40ss@mail.masar.ma")
    assert (secure.tls, secure.port, secure.username, secure.password) == (
        True,
        465,
        "alerts@masar.ma",
        "p@ss",
    )
    for bad in ("http://mail", "smtp://", "smtp://host:port"):
        with pytest.raises(ValueError) as refused:
            parse_smtp_url(bad)
        assert (
            "port" in str(refused.value)
            or "scheme" in str(refused.value)
            or "host" in str(refused.value)
        )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", list(SUBJECTS))
def test_every_kind_renders_in_every_language(kind, language):
    view = NoticeView(
        notification_id="ntf-0123456789abcdef",
        kind=kind,
        case_id="case-9f8e7d",
        region=FES,
        referral_id="ref-1a2b3c",
        sector="shelter",
        provider_organisation_id=PROVIDER,
        rung=2,
        deadline=datetime(2026, 5, 12, 12, 0, tzinfo=UTC),
    )
    rendered = render(view, language, "https://console.masar.ma/")
    assert rendered.link == "https://console.masar.ma/cases/case-9f8e7d"
    assert "case-9f8e7d" in rendered.text and "ref-1a2b3c" in rendered.html
    assert "2026-05-12 13:00 (Africa/Casablanca)" in rendered.text
    assert "%(" not in rendered.subject
    if language != "en":
        # Translated, not the English text.
        english = render(view, "en", "https://console.masar.ma")
        assert rendered.subject != english.subject
    message = build_message(
        rendered,
        sender="Masar <alerts@masar.ma>",
        to="staff@example.org",
        delivery_id="dlv-0123456789abcdef",
        notification_id=view.notification_id,
        created_at=datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
    )
    parsed = message_from_string(message.as_string(), policy=policy.default)
    assert parsed["Message-ID"] == "<dlv-0123456789abcdef@masar.ma>"
    assert parsed["Content-Language"] == language
    assert parsed.get_body(preferencelist=("plain",)) is not None
    assert parsed.get_body(preferencelist=("html",)) is not None


def test_message_ids_are_stable():
    assert message_id("dlv-1", "alerts@masar.ma") == message_id("dlv-1", "Masar <alerts@masar.ma>")
    assert message_id("dlv-1", "") == "<dlv-1@masar.localhost>"


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogs_match_their_sources(language):
    folder = Path(LOCALE_DIR) / language / "LC_MESSAGES"
    with open(folder / "masar.po", "rb") as source:
        catalog = read_po(source)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    fresh = gettext.GNUTranslations(compiled)
    with open(folder / "masar.mo", "rb") as shipped_file:
        shipped = gettext.GNUTranslations(shipped_file)
    for message in catalog:
        if message.id:
            assert shipped.gettext(str(message.id)) == fresh.gettext(str(message.id))
            if language != "en":
                assert message.string, f"{language}: {message.id!r} is not translated"
    with open(Path(LOCALE_DIR) / "masar.pot", "rb") as template_file:
        template = read_po(template_file)
    assert {m.id for m in template if m.id} == {m.id for m in catalog if m.id}


def test_notification_settings(tmp_path):
    from masar.platform.settings import ServiceSettings, SettingsError
    from services.network.app import mail_dir, mailer_for
    from services.network.mail import FileMailer, SmtpMailer

    base = {"MASAR_DATA_DIR": str(tmp_path)}
    local = ServiceSettings.from_env("network", base)
    assert local.notify.smtp_url is None and local.notify.console_url == "http://127.0.0.1:8080"
    assert isinstance(mailer_for(local), FileMailer) and mail_dir(local) == tmp_path / "mail"
    configured = ServiceSettings.from_env(
        "network",
        {
            **base,
            "MASAR_SMTP_URL": "smtps://alerts:s3cret@mail.masar.ma:465",
            "MASAR_SMTP_FROM": "Masar <alerts@masar.ma>",
            "MASAR_CONSOLE_URL": "https://console.masar.ma/",
        },
    )
    assert configured.notify.console_url == "https://console.masar.ma"
    assert isinstance(mailer_for(configured), SmtpMailer)
    with pytest.raises(SettingsError) as refused:
        ServiceSettings.from_env("network", {**base, "MASAR_SMTP_URL": "imap://u:s3cret@host"})
    assert "MASAR_SMTP_URL" in str(refused.value) and "s3cret" not in str(refused.value)
    # Other services do not read them.
    assert (
        ServiceSettings.from_env("shelter", {**base, "MASAR_SMTP_URL": "nope"}).notify.smtp_url
        is None
    )


def test_every_kind_has_its_wire_name_and_a_text():
    for kind in NotifyKind:
        assert pb.NotificationKind.Value("NOTIFICATION_KIND_" + kind.name) > 0, kind
        assert kind in SUBJECTS, kind
    assert pb.NOTIFICATION_KIND_BREACH == 15
