"""Keys and field encryption (AES-256-GCM).

A key ring holds every key that may still be needed to decrypt; the active
(newest) key encrypts. Every ciphertext names its key id, so keys rotate
without breaking data written under an older one.

Key ring sources, first found wins:
- MASAR_KEYRING: "kid2:BASE64KEY,kid1:BASE64KEY" — the first is the active key;
- MASAR_KEY_FILE: a JSON file {"active": kid, "keys": {kid: BASE64KEY}};
- $MASAR_DATA_DIR/keyring.json, created (mode 0600) with a fresh key on first
  use — the embedded default for the local stack.

Private files: the data directory and everything Masar creates in it (key
files, SQLite databases and their -wal/-shm, logs) are the owner's only —
directories 0700, files 0600, whatever the process's umask. `private_dir`
and `create_private_file` make them so at creation; `restrict_file` tightens
a file Masar owns that an older version created readable by others.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from masar.platform.settings import SettingsError, process_environ

NONCE_BYTES = 12
FIELD_PREFIX = "enc1"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

log = logging.getLogger(__name__)


# --- private files -------------------------------------------------------------


def private_dir(path: Path) -> Path:
    """Create `path` (and any missing parent) 0700. A directory that already
    existed is left as it is: it may be shared (a home directory, /tmp)."""
    missing: list[Path] = []
    cursor = path
    while not cursor.exists():
        missing.append(cursor)
        if cursor.parent == cursor:
            break
        cursor = cursor.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # another process of the stack made it first
        os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode is masked by the umask
    return path


def restrict_file(path: Path) -> None:
    """A file Masar owns: 0600 if group or others may touch it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        try:
            os.chmod(path, (mode & ~(stat.S_IRWXG | stat.S_IRWXO)) | stat.S_IRUSR | stat.S_IWUSR)
        except OSError as exc:  # not ours, or a read-only file system: say so
            log.warning("%s is readable by others and cannot be made 0600 (%s)", path, exc)


def create_private_file(path: Path, text: str = "") -> bool:
    """Create `path` 0600 (its directory 0700 if missing) holding `text`,
    whole or not at all: it is written aside and linked into place, so a
    reader never sees it half written. False if it already existed (another
    process made it first): it is then left as it is."""
    private_dir(path.parent)
    aside = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_private(aside, text)
        try:
            os.link(aside, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: create it in place
            try:
                _write_private(path, text)
            except FileExistsError:
                return False
    finally:
        aside.unlink(missing_ok=True)
    return True


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), PRIVATE_FILE_MODE)  # whatever the umask said
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class DecryptionError(Exception):
    """Ciphertext could not be decrypted (unknown key id or tampered data)."""


@dataclass(frozen=True)
class Keyring:
    active_id: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise SettingsError("key ring: the active key id has no key")
        for kid, key in self.keys.items():
            if len(key) != 32:
                raise SettingsError(f"key ring: key {kid} must be 32 bytes (AES-256)")
            if not kid or ":" in kid or "," in kid:
                raise SettingsError("key ring: key ids must be non-empty without ':' or ','")

    @classmethod
    def generate(cls, key_id: str | None = None) -> Keyring:
        kid = key_id or f"k{secrets.token_hex(4)}"
        return cls(active_id=kid, keys={kid: AESGCM.generate_key(bit_length=256)})

    def rotated(self, key_id: str | None = None) -> Keyring:
        """A ring whose new active key encrypts, all old keys still decrypt."""
        new = Keyring.generate(key_id)
        return Keyring(active_id=new.active_id, keys={**self.keys, **new.keys})

    # --- raw bytes: used by the payload codec --------------------------------

    def encrypt(self, plaintext: bytes, *, aad: bytes = b"") -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.active_id]).encrypt(nonce, plaintext, aad or None)
        return self.active_id, nonce + sealed

    def decrypt(self, key_id: str, blob: bytes, *, aad: bytes = b"") -> bytes:
        key = self.keys.get(key_id)
        if key is None:
            raise DecryptionError(f"unknown key id {key_id!r}")
        try:
            return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad or None)
        except InvalidTag:
            raise DecryptionError("ciphertext failed authentication") from None

    # --- text fields: used for PII columns ------------------------------------

    def encrypt_text(self, value: str, *, purpose: str = "") -> str:
        kid, blob = self.encrypt(value.encode(), aad=purpose.encode())
        return f"{FIELD_PREFIX}:{kid}:{base64.b64encode(blob).decode()}"

    def decrypt_text(self, token: str, *, purpose: str = "") -> str:
        try:
            prefix, kid, data = token.split(":", 2)
        except ValueError:
            raise DecryptionError("not an encrypted field") from None
        if prefix != FIELD_PREFIX:
            raise DecryptionError("not an encrypted field")
        return self.decrypt(kid, base64.b64decode(data), aad=purpose.encode()).decode()

    # --- serialisation --------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(
            {
                "active": self.active_id,
                "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()},
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, *, source: str) -> Keyring:
        try:
            doc = json.loads(text)
            keys = {k: base64.b64decode(v) for k, v in doc["keys"].items()}
            return cls(active_id=doc["active"], keys=keys)
        except (KeyError, ValueError, TypeError, AttributeError):
            raise SettingsError(f"{source} is not a valid key ring file") from None

    @classmethod
    def parse(cls, spec: str, *, source: str = "MASAR_KEYRING") -> Keyring:
        keys: dict[str, bytes] = {}
        active = None
        for part in spec.split(","):
            kid, sep, b64 = part.strip().partition(":")
            if not sep:
                raise SettingsError(f"{source} must be 'kid:BASE64KEY[,kid:BASE64KEY...]'")
            try:
                keys[kid] = base64.b64decode(b64, validate=True)
            except ValueError:
                raise SettingsError(f"{source}: key {kid} is not valid base64") from None
            active = active or kid
        if active is None:
            raise SettingsError(f"{source} is empty")
        return cls(active_id=active, keys=keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        env = process_environ() if environ is None else environ
        spec = env.get("MASAR_KEYRING", "").strip()
        if spec:
            return cls.parse(spec)
        key_file = env.get("MASAR_KEY_FILE", "").strip()
        if key_file:
            path = Path(key_file).expanduser()
            if not path.is_file():
                raise SettingsError("MASAR_KEY_FILE does not name a readable file")
            return cls.from_json(path.read_text(), source="MASAR_KEY_FILE")
        data_dir = Path(env.get("MASAR_DATA_DIR", "./var").strip() or "./var").expanduser()
        return cls.load_or_create(data_dir / "keyring.json")

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        """The ring in `path`, created 0600 (its directory 0700) on first use;
        one an older version left readable by others is made 0600."""
        if not path.exists():
            # False: another process of the stack created it first.
            create_private_file(path, cls.generate().to_json())
        restrict_file(path)
        return cls.from_json(path.read_text(), source=str(path))


_process_keyring: Keyring | None = None


def install_keyring(keyring: Keyring | None) -> None:
    """Set the process's key ring (entry points and tests); None resets it."""
    global _process_keyring
    _process_keyring = keyring


def process_keyring() -> Keyring:
    global _process_keyring
    if _process_keyring is None:
        _process_keyring = Keyring.from_env()
    return _process_keyring


class EncryptedText(TypeDecorator[str]):
    """A text column stored as AES-GCM ciphertext with its key id.

    `purpose` (e.g. "shelter.address") is bound into the ciphertext, so a value
    copied into another column does not decrypt there.
    """

    impl = Text
    cache_ok = True

    def __init__(self, purpose: str = "", *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.purpose = purpose

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return process_keyring().encrypt_text(value, purpose=self.purpose)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return process_keyring().decrypt_text(value, purpose=self.purpose)
