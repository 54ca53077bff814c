"""The consent-proof key: intake's own, apart from the token-signing key.

Intake signs the consent proofs a sector needs for each referral
(masar.referral.consent) with a key of its own; sectors hold only its public
half. So neither the network service (which signs tokens) nor a sector can
make a proof, and intake cannot make a token.

- intake: MASAR_CONSENT_SIGNING_KEY (base64 of the private key), else
  $MASAR_DATA_DIR/keys/intake/consent-signing.json (created by `masar up`);
- sectors: MASAR_CONSENT_PUBLIC_KEY (comma-separated base64 public keys; keep
  the old one listed while rotating), else $MASAR_DATA_DIR/keys/public/consent.json.

A process given MASAR_TOKEN_SIGNING_KEY (tests and benchmarks that run every
service in one process with one key) signs and verifies proofs with it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from masar.platform import keyfiles
from masar.platform.identity import TokenIssuer, TokenVerifier
from masar.platform.settings import CONSENT_SIGNER, KeySettings, SettingsError

CONSENT_KIND = "consent-signing"


def consent_issuer(keys: KeySettings) -> TokenIssuer:
    """Intake's consent key; SettingsError for any other process."""
    if keys.consent_signing_key:
        return TokenIssuer.from_b64(keys.consent_signing_key, source="MASAR_CONSENT_SIGNING_KEY")
    if keys.token_signing_key:
        return TokenIssuer.from_b64(keys.token_signing_key)
    path = keys.consent_signing_path
    if path is None:
        raise SettingsError(
            f"the {keys.holder} process holds no consent key: only {CONSENT_SIGNER} signs "
            "consent proofs"
        )
    return TokenIssuer(keyfiles.ensure_key_pair(path, keys.consent_public_path, CONSENT_KIND))


def consent_verifier(keys: KeySettings) -> TokenVerifier:
    """The public keys a sector verifies consent proofs with."""
    found: list[Ed25519PublicKey] = []
    if keys.consent_public_keys:
        found += keyfiles.public_list(keys.consent_public_keys, source="MASAR_CONSENT_PUBLIC_KEY")
    if keys.token_signing_key:
        found.append(TokenIssuer.from_b64(keys.token_signing_key).public_key)
    if keys.consent_signing_key:
        found.append(consent_issuer(keys).public_key)
    if not found:
        path = keys.consent_public_path
        if not path.exists():
            raise SettingsError(
                "no consent public key: set MASAR_CONSENT_PUBLIC_KEY, or run in the data "
                "dir of a `masar up` (keys/public/consent.json)"
            )
        found = keyfiles.read_public(path, CONSENT_KIND)
    return TokenVerifier(found)
