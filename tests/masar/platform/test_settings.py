"""Settings: read once, typed, and a bad value names its variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from masar.platform.settings import CliSettings, ServiceSettings, SettingsError, WorkerSettings

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_follow_the_design(tmp_path) -> None:
    settings = ServiceSettings.from_env("shelter", {"MASAR_DATA_DIR": str(tmp_path)})
    assert settings.addr == "127.0.0.1:50052"
    assert settings.task_queue == "masar-shelter"
    assert settings.common.temporal.address == "127.0.0.1:7233"
    assert settings.database_url == f"sqlite:///{(tmp_path / 'shelter.db').resolve()}"


def test_database_url_and_addresses_from_environment() -> None:
    env = {
        "MASAR_LEGAL_DATABASE_URL": "postgresql+psycopg://u@db:5432/legal",
        "MASAR_LEGAL_ADDR": "0.0.0.0:6000",
        "MASAR_TEMPORAL_NAMESPACE": "fes",
    }
    settings = ServiceSettings.from_env("legal", env)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.addr == "0.0.0.0:6000"
    assert settings.common.temporal.namespace == "fes"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MASAR_TEMPORAL_ADDRESS": "no-port"}, "MASAR_TEMPORAL_ADDRESS"),
        ({"MASAR_SHELTER_ADDR": "host:99999"}, "MASAR_SHELTER_ADDR"),
        ({"MASAR_SHELTER_DATABASE_URL": "mysql://x"}, "MASAR_SHELTER_DATABASE_URL"),
        ({"MASAR_SHELTER_METRICS_PORT": "nine"}, "MASAR_SHELTER_METRICS_PORT"),
        ({"MASAR_LOG_FORMAT": "xml"}, "MASAR_LOG_FORMAT"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"MASAR_REVOCATION_POLL_SECONDS": "120"}, "MASAR_REVOCATION_POLL_SECONDS"),
        ({"MASAR_TLS_CA_FILE": "/nowhere/ca.pem"}, "MASAR_TLS_CA_FILE"),
        ({"MASAR_TEMPORAL_TLS_CA_FILE": "/nowhere/ca.pem"}, "MASAR_TEMPORAL_TLS_CA_FILE"),
        ({"MASAR_PAYLOAD_KEY_FILE": "/nowhere/ring.json"}, "MASAR_PAYLOAD_KEY_FILE"),
    ],
)
def test_malformed_setting_names_the_variable(env, variable) -> None:
    with pytest.raises(SettingsError, match=variable):
        ServiceSettings.from_env("shelter", env)


def test_missing_policy_file_names_the_variable(tmp_path) -> None:
    with pytest.raises(SettingsError, match="MASAR_POLICY_FILE"):
        WorkerSettings.from_env({"MASAR_POLICY_FILE": str(tmp_path / "absent.toml")})


def test_process_stops_with_a_message_naming_the_variable(tmp_path) -> None:
    """A real service process refuses to start on a malformed setting."""
    result = subprocess.run(
        [sys.executable, "-m", "services.shelter"],
        env={"MASAR_DATA_DIR": str(tmp_path), "MASAR_SHELTER_ADDR": "not-an-address"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MASAR_SHELTER_ADDR" in result.stderr
    assert "Traceback" not in result.stderr


def test_only_the_settings_module_reads_the_environment() -> None:
    reads = re.compile(r"\bos\.(environ|getenv|putenv)\b|\bgetenv\(")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for top in ("masar", "services", "workflows")
        for path in sorted((ROOT / top).rglob("*.py"))
        if "v1" not in path.relative_to(ROOT).parts[:2]
        and path != ROOT / "masar" / "platform" / "settings.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if reads.search(line)
    ]
    assert found == []


def test_cli_settings(tmp_path) -> None:
    cli = CliSettings.from_env({"MASAR_DATA_DIR": str(tmp_path), "MASAR_TOKEN": " t0k "})
    assert (cli.token, cli.user, cli.common.data_dir) == ("t0k", "coordinator-cli", tmp_path)
    assert not cli.keyring_configured and not cli.token_public_key_set
    assert CliSettings.from_env({"MASAR_USER": "coord-7", "MASAR_KEY_FILE": "/k"}).user == "coord-7"
    with pytest.raises(SettingsError, match="MASAR_INTAKE_ADDR"):
        CliSettings.from_env({"MASAR_INTAKE_ADDR": "nowhere"})


def test_each_process_names_only_its_own_keys(tmp_path) -> None:
    """Key settings: the signing keys are read only by their holder, every
    private default path is the process's own directory."""
    env = {
        "MASAR_DATA_DIR": str(tmp_path),
        "MASAR_CONSENT_SIGNING_KEY": "c2VjcmV0",
        "MASAR_NETWORK_CLIENT_KEYS": "shelter:cHVi",
    }
    keys = {
        n: ServiceSettings.from_env(n, env).key_settings for n in ("intake", "shelter", "network")
    }
    assert keys["intake"].consent_signing_key and not keys["shelter"].consent_signing_key
    assert keys["network"].trusted_clients and not keys["intake"].trusted_clients
    assert keys["network"].token_issuer_path == tmp_path / "keys/network/token-issuer.json"
    assert keys["shelter"].token_issuer_path is None
    assert keys["shelter"].consent_signing_path is None
    assert keys["shelter"].data_keyring_path == tmp_path / "keys/shelter/data-keyring.json"
    assert keys["shelter"].client_key_path == tmp_path / "keys/shelter/client.json"
    assert keys["shelter"].token_public_path == tmp_path / "keys/public/token-issuer.json"
    assert "c2VjcmV0" not in repr(keys["intake"])  # secrets never in a repr
    assert ServiceSettings.from_env("shelter", env).revocation_poll_seconds == 20
    cli = CliSettings.from_env(env)
    assert cli.key_settings.holder == "cli" and not cli.key_settings.consent_signing_key
