"""Keys that sign audit checkpoints and provenance records: Ed25519 key pairs or a shared HMAC-SHA256 secret.

Key files:

- Ed25519 private key: PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``), written with mode 0600.
- Ed25519 public key: SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``); all that verification needs.
- HMAC key: one line ``rail-hmac-sha256:<64 hex digits>``, mode 0600; the same file signs and verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rail.errors import SigningKeyError

__all__ = ["ED25519", "HMAC_SHA256", "CheckpointKey", "generate_key", "load_key"]

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"
_HMAC_PREFIX = "rail-hmac-sha256:"


@dataclass(frozen=True, eq=False)
class CheckpointKey:
    """Sign or verify checkpoints and provenance; load one with :func:`load_key`.

    ``key_id`` is a short fingerprint stored with each signature so a verifier can tell a wrong key from a
    forgery.
    """

    alg: str
    key_id: str
    private: Ed25519PrivateKey | None = None
    public: Ed25519PublicKey | None = None
    secret: bytes | None = None

    @property
    def can_sign(self) -> bool:
        """Whether this key can sign (an Ed25519 private key or an HMAC secret)."""
        return self.private is not None or self.secret is not None

    def sign(self, message: bytes) -> bytes:
        """Return the signature of ``message``; raise SigningKeyError for a public-only key."""
        if self.secret is not None:
            return hmac.new(self.secret, message, hashlib.sha256).digest()
        if self.private is None:
            raise SigningKeyError("this is a public key; signing needs the private key file")
        return self.private.sign(message)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is this key's signature of ``message``."""
        if self.secret is not None:
            return hmac.compare_digest(self.sign(message), signature)
        assert self.public is not None
        try:
            self.public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def _ed25519_key(private: Ed25519PrivateKey | None, public: Ed25519PublicKey) -> CheckpointKey:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return CheckpointKey(alg=ED25519, key_id=hashlib.sha256(raw).hexdigest()[:16], private=private,
                         public=public)


def _hmac_key(secret: bytes) -> CheckpointKey:
    # The fingerprint is a hash of a 256-bit random secret, so publishing it reveals nothing usable.
    key_id = hashlib.sha256(b"rail.audit.v1/hmac-key-id\x00" + secret).hexdigest()[:16]
    return CheckpointKey(alg=HMAC_SHA256, key_id=key_id, secret=secret)


def load_key(path: str | Path) -> CheckpointKey:
    """Load a key file (Ed25519 private or public PEM, or an HMAC key); raise SigningKeyError if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"key file {path} does not exist; create one with "
                         f"`rail audit keygen {path}`") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot read key file {path}: {exc.strerror}") from exc
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN PRIVATE KEY-----"):
            private = serialization.load_pem_private_key(text, password=None)
            if not isinstance(private, Ed25519PrivateKey):
                raise SigningKeyError(f"key file {path} holds a {type(private).__name__}; "
                                      "rail signs with Ed25519")
            return _ed25519_key(private, private.public_key())
        if text.startswith(b"-----BEGIN PUBLIC KEY-----"):
            public = serialization.load_pem_public_key(text)
            if not isinstance(public, Ed25519PublicKey):
                raise SigningKeyError(f"key file {path} holds a {type(public).__name__}; "
                                      "rail verifies Ed25519")
            return _ed25519_key(None, public)
        if text.startswith(_HMAC_PREFIX.encode()):
            secret = bytes.fromhex(text[len(_HMAC_PREFIX):].decode("ascii"))
            if len(secret) < 32:
                raise SigningKeyError(f"HMAC key in {path} is {len(secret)} bytes; use at least 32")
            return _hmac_key(secret)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"key file {path} is damaged: {exc}") from exc
    raise SigningKeyError(f"{path} is not a rail checkpoint key (expected an Ed25519 PEM key or an "
                     f"'{_HMAC_PREFIX}' line); create one with `rail audit keygen`")


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL: never overwrite an existing key, which would orphan every checkpoint it signed.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot create key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def generate_key(path: str | Path, alg: str = ED25519) -> tuple[Path, Path | None]:
    """Create a new key at ``path`` (mode 0600); for Ed25519 also ``path.pub``. Returns (private, public)."""
    path = Path(path)
    if alg == HMAC_SHA256:
        _write_private(path, f"{_HMAC_PREFIX}{secrets.token_hex(32)}\n".encode())
        return path, None
    if alg != ED25519:
        raise SigningKeyError(f"unknown key type {alg!r}; use {ED25519} or {HMAC_SHA256}")
    public_path = path.with_name(path.name + ".pub")
    if public_path.exists():
        raise SigningKeyError(f"{public_path} already exists; refusing to overwrite a key")
    private = Ed25519PrivateKey.generate()
    _write_private(path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    tmp = public_path.with_name(public_path.name + ".tmp")
    tmp.write_bytes(public_pem)
    os.replace(tmp, public_path)
    return path, public_path
