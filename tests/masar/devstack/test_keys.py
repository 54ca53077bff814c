"""Issue 12, item 5, on the local stack: `masar up` gives every process its
own key files and an environment naming only them. A sector given only its
own settings cannot mint a token, sign a consent proof, or decrypt another
service's columns — checked with its settings, and in a process started with
exactly the environment `masar up` gives it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from masar.contract import Sector, ServiceName
from masar.devstack.keys import prepare_keys
from masar.devstack.plan import SERVICES, StackPlan, plan_stack
from masar.platform.channels import NetworkIssuedToken, service_identity
from masar.platform.consent_keys import consent_issuer, consent_verifier
from masar.platform.crypto import DecryptionError, Keyring
from masar.platform.identity import Role, TokenIssuer, TokenVerifier
from masar.platform.process import data_keyring, payload_keys, process_keys
from masar.platform.settings import ServiceSettings, SettingsError
from masar.referral.consent import issue_consent_proof
from tests.processes import ROOT, stack_env

SECTORS = ("shelter", "legal", "employment")
PRIVATE = (
    "MASAR_TOKEN_SIGNING_KEY",
    "MASAR_CONSENT_SIGNING_KEY",
    "MASAR_KEYRING",
    "MASAR_KEY_FILE",
    "MASAR_PAYLOAD_KEYRING",
    "MASAR_PAYLOAD_KEY_FILE",
    "MASAR_CLIENT_KEY",
    "MASAR_SERVICE_TOKEN",
    "MASAR_NETWORK_CLIENT_KEYS",
)


@pytest.fixture
def plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StackPlan:
    """A local stack's plan and its keys, as `masar up` makes them; this
    process's own test keys out of the way (each child reads its own)."""
    for name in PRIVATE:
        monkeypatch.delenv(name, raising=False)
    planned = plan_stack(stack_env(tmp_path / "data"))
    prepare_keys(planned)
    return planned


def _settings(plan: StackPlan, name: str) -> ServiceSettings:
    return ServiceSettings.from_env(name, plan.part_env(name))  # type: ignore[arg-type]


def _key_paths(env: dict[str, str], keys_dir: Path) -> set[Path]:
    return {Path(v) for v in env.values() if v.startswith(str(keys_dir))}


def test_each_child_names_only_its_own_key_material(plan: StackPlan) -> None:
    keys_dir = plan.data_dir / "keys"
    for part in (*SERVICES, "journey"):
        env = plan.part_env(part)
        named = _key_paths(env, keys_dir)
        assert named, part
        for path in named:
            assert path.parent == keys_dir / part, (part, path)
        assert "MASAR_CONSENT_SIGNING_KEY" not in env and "MASAR_CLIENT_KEY" not in env
        assert ("MASAR_TOKEN_SIGNING_KEY" in env) is False  # network: its file, not a variable
        keys = plan.keys_of(part)
        defaults = [keys.data_keyring_path, keys.payload_keyring_path, keys.client_key_path]
        for optional in (keys.token_issuer_path, keys.consent_signing_path):
            if optional is not None:
                defaults.append(optional)
        for path in defaults:  # its default paths: its own directory only
            assert path.parent == keys_dir / part, (part, path)
    assert plan.keys_of("shelter").token_issuer_path is None
    assert plan.keys_of("shelter").consent_signing_path is None
    assert plan.keys_of("network").token_issuer_path == keys_dir / "network" / "token-issuer.json"
    assert plan.keys_of("intake").consent_signing_path == (
        keys_dir / "intake" / "consent-signing.json"
    )
    assert "MASAR_PAYLOAD_KEY_FILE" not in plan.part_env("temporal")
    assert _key_paths(plan.part_env("temporal"), keys_dir) == set()
    # The console is a client: people's tokens, no key of any part.
    assert _key_paths(plan.part_env("console"), keys_dir) == set()
    assert not [name for name in PRIVATE if name in plan.part_env("console")]


def test_key_files_are_separate_private_and_published_only_as_public_keys(
    plan: StackPlan,
) -> None:
    keys_dir = plan.data_dir / "keys"
    for directory in [keys_dir, *(p for p in keys_dir.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
    for file in keys_dir.rglob("*.json"):
        doc = json.loads(file.read_text())
        if file.parent.name == "public" or file.parent.parent.name == "public":
            assert "private_key" not in doc and "keys" not in doc, file
        elif "assertion" not in file.name:
            assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file
    # The data key rings are each service's own; the payload key ring one.
    rings = {name: data_keyring(plan.keys_of(name)) for name in SERVICES}
    assert len({json.dumps(sorted(r.keys)) for r in rings.values()}) == len(SERVICES)
    payloads = {
        holder: Keyring.from_json(path.read_text(), source=str(path))
        for holder in ("intake", "shelter", "legal", "employment", "network", "journey", "codec")
        if (path := plan.keys_of(holder).payload_keyring_path).is_file()
    }
    assert len(payloads) == 7 and len({r.active_id for r in payloads.values()}) == 1
    for name in SERVICES:
        assert set(rings[name].keys).isdisjoint(payloads["intake"].keys)


@pytest.mark.parametrize("sector", SECTORS)
def test_a_sector_with_its_own_settings_mints_signs_and_reads_nothing_else(
    plan: StackPlan, sector: ServiceName
) -> None:
    settings = _settings(plan, sector)
    keys = process_keys(settings)
    with pytest.raises(SettingsError, match="holds no token-signing key"):
        TokenIssuer.from_keys(keys)
    with pytest.raises(SettingsError, match="holds no consent key"):
        consent_issuer(keys)
    # Its identity is asked of the network service, never minted here.
    assert isinstance(service_identity(sector, keys, settings.common), NetworkIssuedToken)
    # Intake's columns do not decrypt with its key ring.
    alias = data_keyring(plan.keys_of("intake")).encrypt_text("Fatima", purpose="intake.alias")
    with pytest.raises(DecryptionError):
        data_keyring(keys).decrypt_text(alias, purpose="intake.alias")
    # What it may do: verify tokens and intake's consent proofs, seal payloads.
    network = TokenIssuer.from_keys(plan.keys_of("network"))
    TokenVerifier.from_keys(keys).verify(network.issue(role=Role.OPERATOR))
    proof, _ = issue_consent_proof(
        consent_issuer(plan.keys_of("intake")), case_id="c1", sector=Sector(sector)
    )
    consent_verifier(keys).verify_document(proof, "masar-consent")
    assert payload_keys(settings, keys) is not None
    # A proof signed with the token issuer's key is no consent proof.
    forged, _ = issue_consent_proof(network, case_id="c1", sector=Sector(sector))
    with pytest.raises(Exception, match="unknown key"):
        consent_verifier(keys).verify_document(forged, "masar-consent")


PROBE = """
import json, sys
from masar.platform.settings import ServiceSettings, SettingsError
from masar.platform.process import process_keys, data_keyring
from masar.platform.identity import TokenIssuer
from masar.platform.consent_keys import consent_issuer
from masar.platform.crypto import DecryptionError
settings = ServiceSettings.from_env(sys.argv[1])
keys = process_keys(settings)
found = {}
for what, attempt in (("mint", lambda: TokenIssuer.from_keys(keys)),
                      ("consent", lambda: consent_issuer(keys))):
    try:
        attempt()
        found[what] = "yes"
    except SettingsError:
        found[what] = "refused"
try:
    data_keyring(keys).decrypt_text(sys.argv[2], purpose="intake.alias")
    found["decrypt"] = "yes"
except DecryptionError:
    found["decrypt"] = "refused"
print(json.dumps(found))
"""


@pytest.mark.parametrize("sector", SECTORS)
def test_a_sector_process_with_its_environment(plan: StackPlan, sector: str) -> None:
    alias = data_keyring(plan.keys_of("intake")).encrypt_text("Fatima", purpose="intake.alias")
    env = {k: v for k, v in plan.part_env(sector).items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, sector, alias],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert (found["mint"], found["consent"], found["decrypt"]) == ("refused",) * 3


def test_an_older_data_dir_is_carried_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its shared issuer key becomes the network's only; its shared key ring
    stays readable by each service (new data under the service's own key) and
    seals payloads as before."""
    for name in PRIVATE:
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    data.mkdir()
    issuer, ring = TokenIssuer.generate(), Keyring.generate("old")
    (data / "token-issuer.json").write_text(json.dumps({"private_key": issuer.private_key_b64()}))
    (data / "keyring.json").write_text(ring.to_json())
    old_row = ring.encrypt_text("Fatima", purpose="shelter.alias")
    planned = plan_stack(stack_env(data))
    prepare_keys(planned)
    assert not (data / "token-issuer.json").exists()
    assert TokenIssuer.from_keys(planned.keys_of("network")).key_id == issuer.key_id
    for name in SERVICES:
        own = data_keyring(planned.keys_of(name))
        assert own.decrypt_text(old_row, purpose="shelter.alias") == "Fatima"
        assert own.active_id != "old"
    payload = planned.keys_of("journey").payload_keyring_path
    assert Keyring.from_json(payload.read_text(), source="payload").keys == ring.keys
