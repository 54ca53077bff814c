"""Actor assertions: the signer, its key files, the public keys the journey
worker reads, and the outbox's signing at delivery (what the journey
verifies: workflows.authentication)."""

from __future__ import annotations

import dataclasses
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.converter import value_to_type

from masar import contract as c
from masar.contract.assertion import canonical_json, payload_digest
from masar.platform.assertions import (
    Actor,
    AssertionSigner,
    PublicKeySource,
    ensure_service_keys,
    public_keys_path,
    read_public_keys,
    registered_public_keys,
)
from masar.platform.outbox import entry_payload, read_entry
from masar.platform.settings import SettingsError
from workflows.authentication import IssuerKeys

NOW = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
COORDINATOR = Actor("coord-1", "coordinator", region="fes-meknes")


def extension(**fields: object) -> c.DeadlineExtension:
    values: dict[str, object] = {
        "event_id": "evt-1",
        "target": "shr-1",
        "extend_by_seconds": 3600,
        "coordinator_id": "coord-1",
        "reason": "provider_asked",
    }
    values.update(fields)
    return c.DeadlineExtension(**values)  # type: ignore[arg-type]


def test_a_signed_assertion_verifies_and_covers_its_payload() -> None:
    signer = AssertionSigner.generate("intake")
    event = extension()
    assertion = signer.sign(c.UPDATE_EXTEND, "case-1", event, COORDINATOR, now=NOW)
    assert assertion.issuer == "intake" and assertion.key_id.startswith("intake-")
    assert assertion.payload_digest == payload_digest(event)
    assert (assertion.actor_id, assertion.role, assertion.region) == (
        "coord-1",
        "coordinator",
        "fes-meknes",
    )
    keys = IssuerKeys([signer.public_key])
    keys.verify(assertion)
    # Any claim changed breaks the signature.
    for change in ({"role": "supervisor"}, {"case_id": "case-2"}, {"issued_at": datetime.now(UTC)}):
        with pytest.raises(Exception, match="signature"):
            keys.verify(dataclasses.replace(assertion, **change))
    # Another key of the same name does not pass for it.
    with pytest.raises(Exception, match="unknown key"):
        IssuerKeys([AssertionSigner.generate("intake").public_key]).verify(assertion)
    # A digest ignores the assertion itself, and nulls.
    signed = dataclasses.replace(event, assertion=assertion)
    assert payload_digest(signed) == payload_digest(event)
    assert b"null" not in canonical_json(
        c.ReferralDecision("e", "shr-1", c.Sector.SHELTER, True, NOW)
    )


def test_the_outbox_path_signs_what_the_journey_decodes() -> None:
    """The outbox keeps the Update as JSON and signs that at delivery; the
    journey computes the digest from the dataclass it decodes."""
    signer = AssertionSigner.generate("shelter")
    event = c.ReferralDecision(
        event_id="evt-2",
        referral_id="shr-1",
        sector=c.Sector.SHELTER,
        accepted=False,
        decided_at=NOW,
        decline_reason="NO_CAPACITY",
    )
    staff = Actor("staff-1", "shelter_staff", organisation_id="org-1")
    stored = entry_payload(event, staff)
    doc, actor = read_entry(stored)
    assert actor == staff and "assertion" not in doc
    sent = signer.sign_json(c.UPDATE_REFERRAL_DECISION, "case-1", doc, staff)
    # As the journey's data converter reads it.
    decoded = value_to_type(c.ReferralDecision, json.loads(json.dumps(sent)))
    assert isinstance(decoded.assertion, c.ActorAssertion)
    assert decoded.assertion.payload_digest == payload_digest(decoded)
    IssuerKeys([signer.public_key]).verify(decoded.assertion)
    # Entries written before assertions existed are still read.
    legacy = json.dumps({"event_id": "evt-3", "risk": "low", "at": NOW.isoformat()})
    assert read_entry(legacy) == (json.loads(legacy), None)


def test_service_keys_are_files_of_their_own(tmp_path: Path) -> None:
    env = {"MASAR_DATA_DIR": str(tmp_path)}
    intake = AssertionSigner.from_env("intake", env)
    shelter = AssertionSigner.from_env("shelter", env)
    keys = tmp_path / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    private = keys / "intake-assertion.json"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert "private_key" not in (keys / "intake-assertion.pub.json").read_text()
    # Loaded again, the same key; each service its own.
    assert AssertionSigner.from_env("intake", env).key_id == intake.key_id
    assert intake.key_id != shelter.key_id
    # A service never takes another's key file.
    with pytest.raises(SettingsError, match="another service"):
        AssertionSigner.from_env("legal", {**env, "MASAR_LEGAL_ASSERTION_KEY_FILE": str(private)})
    configured = AssertionSigner.from_env(
        "intake",
        {"MASAR_DATA_DIR": "/nonexistent", "MASAR_INTAKE_ASSERTION_KEY_FILE": str(private)},
    )
    assert configured.key_id == intake.key_id
    # The journey worker reads the public halves, and this process's signers.
    assert public_keys_path(env) == keys
    found = {k.key_id: k for k in read_public_keys(keys)}
    assert set(found) == {intake.key_id, shelter.key_id}
    assert found[intake.key_id] == intake.public_key
    assert intake.public_key in registered_public_keys()
    source = PublicKeySource(keys)
    assert {intake.key_id, shelter.key_id} <= {k.key_id for k in source()}
    assert ensure_service_keys(tmp_path, ["intake"]) == [intake.public_key]


def test_public_key_files_are_checked(tmp_path: Path) -> None:
    signer = AssertionSigner.generate("legal")
    good = dataclasses.asdict(signer.public_key)
    listing = tmp_path / "keys.json"
    listing.write_text(json.dumps([good]))
    assert read_public_keys(listing) == [signer.public_key]
    # A key id that does not match its key (or its issuer) is refused.
    listing.write_text(json.dumps([{**good, "issuer": "shelter"}]))
    with pytest.raises(SettingsError, match="key_id"):
        read_public_keys(listing)
    listing.write_text(json.dumps({**good, "public_key": "bm90IGEga2V5"}))
    with pytest.raises(SettingsError, match="32-byte"):
        read_public_keys(listing)
    listing.write_text("not json")
    with pytest.raises(SettingsError, match="not a public key file"):
        read_public_keys(listing)


def test_an_actor_comes_from_the_verified_caller() -> None:
    from masar.platform.identity import Caller, Role

    caller = Caller(
        subject="user-1",
        role=Role.COORDINATOR,
        region="oriental",
        issued_at=NOW,
        expires_at=NOW,
    )
    actor = Actor.of(caller, grant_id="grant-1")
    assert actor == Actor("user-1", "coordinator", "", "oriental", "grant-1")
    assert Actor.from_json(actor.to_json()) == actor
    assert Actor.service("legal") == Actor("service:legal", "service:legal")
