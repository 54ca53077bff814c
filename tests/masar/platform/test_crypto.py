"""Field encryption and the key ring."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import Column, Integer, Table, select, text

from masar.platform.crypto import (
    DecryptionError,
    EncryptedText,
    Keyring,
    create_private_file,
    install_keyring,
    process_keyring,
)
from masar.platform.db import Database, new_metadata
from masar.platform.settings import SettingsError

metadata = new_metadata()
people = Table(
    "people",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alias", EncryptedText("test.alias")),
)


@pytest.fixture
def keyring():
    previous = process_keyring()
    ring = Keyring.generate("k1")
    install_keyring(ring)
    yield ring
    install_keyring(previous)


def test_rotation_keeps_old_ciphertext_readable(keyring) -> None:
    old = keyring.encrypt_text("Fatima", purpose="p")
    rotated = keyring.rotated("k2")
    assert rotated.active_id == "k2"
    assert rotated.decrypt_text(old, purpose="p") == "Fatima"
    assert rotated.encrypt_text("x", purpose="p").startswith("enc1:k2:")


def test_tampering_and_wrong_purpose_are_refused(keyring) -> None:
    token = keyring.encrypt_text("Fatima", purpose="a")
    with pytest.raises(DecryptionError):
        keyring.decrypt_text(token, purpose="b")
    with pytest.raises(DecryptionError):
        keyring.decrypt_text(token[:-4] + "AAAA", purpose="a")


def test_column_is_ciphertext_at_rest(keyring, database_url) -> None:
    db = Database(database_url)
    metadata.create_all(db.engine)
    db.call(lambda s: s.execute(people.insert().values(id=1, alias="Marker-7731")))
    assert db.call(lambda s: s.execute(select(people.c.alias)).scalar_one()) == "Marker-7731"
    raw = db.call(lambda s: s.execute(text("SELECT alias FROM people")).scalar_one())
    assert "Marker-7731" not in raw and raw.startswith("enc1:k1:")
    db.dispose()


def test_keyring_sources(tmp_path) -> None:
    ring = Keyring.generate("a")
    spec = ",".join(
        f"{k}:{__import__('base64').b64encode(v).decode()}" for k, v in ring.keys.items()
    )
    assert Keyring.from_env({"MASAR_KEYRING": spec}).active_id == "a"
    created = Keyring.from_env({"MASAR_DATA_DIR": str(tmp_path)})
    assert Keyring.from_env({"MASAR_DATA_DIR": str(tmp_path)}) == created
    assert (tmp_path / "keyring.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(SettingsError, match="MASAR_KEYRING"):
        Keyring.from_env({"MASAR_KEYRING": "nocolon"})


def test_key_files_and_their_directory_are_the_owners_only(tmp_path) -> None:
    previous = os.umask(0o022)  # the usual umask must not matter
    try:
        data = tmp_path / "var" / "data"
        ring = Keyring.from_env({"MASAR_DATA_DIR": str(data)})
        assert stat.S_IMODE((data / "keyring.json").stat().st_mode) == 0o600
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700
        assert [p.name for p in data.iterdir()] == ["keyring.json"]  # nothing left aside
        # One an older version left readable by others is tightened on load.
        os.chmod(data / "keyring.json", 0o644)
        assert Keyring.from_env({"MASAR_DATA_DIR": str(data)}) == ring
        assert stat.S_IMODE((data / "keyring.json").stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def test_a_private_file_is_created_once_whole(tmp_path) -> None:
    path = tmp_path / "secret.json"
    assert create_private_file(path, "first")
    assert not create_private_file(path, "second")  # another process was first
    assert path.read_text() == "first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.json"]
