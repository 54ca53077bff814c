"""The local stack's keys, one set per process, made by `masar up` before
anything starts (so no child races another to create a shared one):

    $MASAR_DATA_DIR/keys/
      network/token-issuer.json      the token-signing key (the network service only)
      network/data-keyring.json      each service's own data key ring (its columns,
      intake/data-keyring.json ...     its audit head)
      intake/consent-signing.json    the consent-proof key (intake only)
      <holder>/payload-keyring.json  the payload codec key ring, one copy per process
                                     that exchanges payloads with journeys (intake,
                                     the sectors, network, journey, codec)
      <service>/client.json          a service's client key: it asks the network
      cli/client.json                  service for its tokens with it (cli: the
                                       stack's bootstrap client, `masar token issue`,
                                       `masar seed`, the CLI's shortcut)
      public/token-issuer.json       public keys everyone may read
      public/consent.json
      public/clients/<name>.json

Private files 0600 in 0700 directories. A data dir from before the keys
were separated is carried over once: its shared `keyring.json` becomes each
payload holder's payload key ring and the older keys of each service's own
data key ring (rotated: new data is written under the service's own key);
its `token-issuer.json` becomes the network service's key, then is removed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from masar.devstack.plan import JOURNEY, SERVICES, StackPlan
from masar.platform import keyfiles
from masar.platform.clients import ensure_client_key
from masar.platform.consent_keys import CONSENT_KIND, consent_issuer
from masar.platform.crypto import Keyring, create_private_file, restrict_file
from masar.platform.identity import ISSUER_FILE, ISSUER_KIND, TokenIssuer
from masar.platform.settings import (
    BOOTSTRAP_CLIENT,
    CONSENT_SIGNER,
    DATA_KEYRING_FILE,
    PAYLOAD_HOLDERS,
    TOKEN_ISSUER_HOLDER,
    KeySettings,
    SettingsError,
)

log = logging.getLogger(__name__)

LEGACY_KEYRING = "keyring.json"
LEGACY_ISSUER = ISSUER_FILE
# Who asks the network service for tokens with a client key of its own.
CLIENTS = ("intake", "shelter", "legal", "employment", "health", "psychosocial", BOOTSTRAP_CLIENT)
HOLDERS = (*SERVICES, JOURNEY, "codec", BOOTSTRAP_CLIENT)


def _legacy_keyring(data_dir: Path) -> Keyring | None:
    path = data_dir / LEGACY_KEYRING
    if not path.is_file():
        return None
    restrict_file(path)
    return Keyring.from_json(path.read_text(), source=str(path))


def _carry_over_issuer(plan: StackPlan, keys: KeySettings) -> None:
    """An older data dir's shared issuer key becomes the network's own."""
    legacy = plan.data_dir / LEGACY_ISSUER
    target = keys.token_issuer_path
    if not legacy.is_file() or target is None:
        return
    if not target.exists():
        try:
            private = json.loads(legacy.read_text())["private_key"]
        except (OSError, KeyError, ValueError, TypeError):
            raise SettingsError(f"{legacy} is not a valid token issuer file") from None
        key = keyfiles.private_from_b64(private, source=str(legacy))
        create_private_file(
            target,
            json.dumps(
                {
                    "kind": ISSUER_KIND,
                    "private_key": keyfiles.private_b64(key),
                    "public_key": keyfiles.public_b64(key.public_key()),
                },
                indent=2,
            ),
        )
    # Only the network service holds it now.
    legacy.unlink(missing_ok=True)


def _payload_rings(plan: StackPlan, legacy: Keyring | None) -> None:
    """One payload key ring, a copy for each holder (unless one was given)."""
    if any(k in plan.given_keys for k in ("MASAR_PAYLOAD_KEYRING", "MASAR_PAYLOAD_KEY_FILE")):
        return
    paths = [plan.keys_of(holder).payload_keyring_path for holder in sorted(PAYLOAD_HOLDERS)]
    existing = next((p for p in paths if p.is_file()), None)
    if existing is not None:
        ring = Keyring.from_json(existing.read_text(), source=str(existing))
    else:
        ring = legacy or Keyring.generate()
    text = ring.to_json()
    for path in paths:
        if not path.exists():
            create_private_file(path, text)
        restrict_file(path)


def _data_rings(plan: StackPlan, legacy: Keyring | None) -> None:
    """Each service's own data key ring (unless one shared ring was given)."""
    for name in SERVICES:
        keys = plan.keys_of(name)
        if plan.part_env(name).get("MASAR_KEY_FILE") != str(keys.own_dir / DATA_KEYRING_FILE):
            continue  # one shared ring was given to `masar up`
        path = keys.data_keyring_path
        if path.exists():
            restrict_file(path)
            continue
        # An older data dir: its rows stay readable, new ones use the service's key.
        ring = legacy.rotated() if legacy is not None else Keyring.generate()
        create_private_file(path, ring.to_json())


def prepare_keys(plan: StackPlan) -> None:
    """Every child's key files, before anything starts."""
    legacy = _legacy_keyring(plan.data_dir)
    network = plan.keys_of(TOKEN_ISSUER_HOLDER)
    if not network.token_signing_key and not network.token_public_keys:
        _carry_over_issuer(plan, network)
        TokenIssuer.from_keys(network)  # made, and its public half published
    elif network.token_signing_key and not network.token_public_keys:
        # Given to `masar up`: publish its public half for the others.
        issuer = TokenIssuer.from_keys(network)
        keyfiles.publish(network.token_public_path, ISSUER_KIND, [issuer.public_key])
    intake = plan.keys_of(CONSENT_SIGNER)
    if not intake.consent_public_keys:
        # Made (or read), its public half published for the sectors.
        signer = consent_issuer(intake)
        keyfiles.publish(intake.consent_public_path, CONSENT_KIND, [signer.public_key])
    _payload_rings(plan, legacy)
    _data_rings(plan, legacy)
    for name in CLIENTS:
        ensure_client_key(plan.keys_of(name))
