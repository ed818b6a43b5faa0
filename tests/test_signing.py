"""Signing keys: Ed25519 pairs and HMAC secrets, written once, owner-only, loaded with clear errors."""

from __future__ import annotations

import stat

import pytest

from rail.errors import SigningKeyError
from rail.signing import ED25519, HMAC_SHA256, generate_key, load_key


@pytest.mark.parametrize("alg", [ED25519, HMAC_SHA256])
def test_generated_keys_sign_and_verify(tmp_path, alg):
    private, public = generate_key(tmp_path / "k", alg)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signer = load_key(private)
    verifier = load_key(public or private)
    signature = signer.sign(b"message")
    assert verifier.verify(b"message", signature) and not verifier.verify(b"other", signature)
    assert signer.key_id == verifier.key_id and len(signer.key_id) == 16


def test_a_public_key_cannot_sign(tmp_path):
    _, public = generate_key(tmp_path / "k")
    key = load_key(public)
    assert not key.can_sign
    with pytest.raises(SigningKeyError, match="needs the private key"):
        key.sign(b"message")


@pytest.mark.parametrize("content, message", [
    (b"hello", "not a rail checkpoint key"),
    (b"rail-hmac-sha256:00ff", "at least 32"),
    (b"rail-hmac-sha256:zz", "damaged"),
    (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "damaged"),
])
def test_unusable_key_files_are_refused_with_the_file_named(tmp_path, content, message):
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(SigningKeyError, match=message) as caught:
        load_key(path)
    assert str(path) in str(caught.value)


def test_keys_are_never_overwritten(tmp_path):
    private, _ = generate_key(tmp_path / "k")
    before = private.read_bytes()
    with pytest.raises(SigningKeyError, match="refusing to overwrite"):
        generate_key(private)
    assert private.read_bytes() == before
    with pytest.raises(SigningKeyError, match="does not exist"):
        load_key(tmp_path / "missing.key")
