"""Encryption at rest of disk-buffer records: AES-256-GCM, the key from the environment or a file.

Key material
    32 bytes, given as 64 hex digits or as base64 (standard or URL-safe alphabet, padding
    optional), in the environment variable named by ``key_env`` or in the file ``key_file``
    (surrounding whitespace ignored; a file may also hold the 32 raw bytes). Anything else is
    refused at start with :class:`KeyLoadError`, whose message names the variable or the file
    and never shows the key. Generate one with ``head -c 32 /dev/urandom | base64``.

Sealed payload layout (the payload of a record whose ``encrypted`` flag is set)::

    offset  size  field
    0       4     key id: BLAKE2b-32 of the empty message keyed with the key (identifies the
                  key without revealing it)
    4       12    nonce, random for each record
    16      n+16  AES-GCM ciphertext of the zstd frame, followed by its 16-byte tag

The associated data is supplied by the caller (the codec binds the record's seq, line count and
timestamp range). A random 96-bit nonce is safe for about 2**32 records under one key.

Failures are never silent: a record written under another key raises :class:`DecryptionError`
saying so (the key ids differ, both shown); a record whose tag does not verify (tampered, or a
key-id collision) raises it too. Both name the segment file and the record's seq. The record
checksum is computed over the sealed bytes, so plain disk damage is reported as corruption before
decryption is attempted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Mapping

__all__ = [
    "KEY_BYTES",
    "KEY_ID_BYTES",
    "NONCE_BYTES",
    "SEALED_OVERHEAD_BYTES",
    "Cipher",
    "DecryptionError",
    "KeyLoadError",
    "cipher_from_settings",
    "load_key",
    "parse_key",
    "sealed_key_id",
]

KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
SEALED_OVERHEAD_BYTES = KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES
_KEY_ID_PERSON = b"logcap-keyid"
_MAX_KEY_FILE_BYTES = 4096


class KeyLoadError(ValueError):
    """The key could not be loaded; the message names where it was looked for."""


class DecryptionError(Exception):
    """A record that cannot be decrypted with the configured key."""

    def __init__(self, where: str, seq: int, reason: str) -> None:
        super().__init__(f"{where}: record {seq}: {reason}")
        self.where = where
        self.seq = seq
        self.reason = reason


def _decode_text_key(text: str) -> bytes | None:
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    padded = (text + "=" * (-len(text) % 4)).encode("ascii")
    for altchars in (None, b"-_"):
        try:
            key = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_BYTES:
            return key
    return None


def parse_key(material: str | bytes, *, origin: str) -> bytes:
    """Decode key material (hex, base64, or — from a file — 32 raw bytes); ``origin`` names
    where it came from in the error message."""
    raw = material.encode("utf-8", "surrogateescape") if isinstance(material, str) else material
    stripped = raw.strip()
    try:
        key = _decode_text_key(stripped.decode("ascii"))
    except UnicodeDecodeError:
        key = None
    if key is None and isinstance(material, bytes) and len(material) == KEY_BYTES:
        key = material
    if key is None:
        raise KeyLoadError(
            f"{origin}: not a {KEY_BYTES}-byte key (expected {2 * KEY_BYTES} hex digits or "
            f"base64 of {KEY_BYTES} bytes; got {len(stripped)} characters)"
        )
    return key


def load_key(
    *, key_env: str = "", key_file: str = "", environ: Mapping[str, str] | None = None
) -> bytes:
    """Load the key from the environment variable ``key_env`` or the file ``key_file``
    (exactly one of them must be given)."""
    if bool(key_env) == bool(key_file):
        raise KeyLoadError("give exactly one of key_env and key_file")
    if key_env:
        env = os.environ if environ is None else environ
        value = env.get(key_env)
        if not value:
            raise KeyLoadError(f"environment variable {key_env!r} is not set or empty")
        return parse_key(value, origin=f"environment variable {key_env!r}")
    try:
        with open(key_file, "rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyLoadError(f"key file {key_file!r}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyLoadError(f"key file {key_file!r}: too large to hold a key")
    return parse_key(data, origin=f"key file {key_file!r}")


def _key_id(key: bytes) -> bytes:
    return hashlib.blake2b(b"", key=key, digest_size=KEY_ID_BYTES, person=_KEY_ID_PERSON).digest()


def sealed_key_id(payload: bytes) -> bytes | None:
    """The key id a sealed payload was written with (None if too short to hold one)."""
    return payload[:KEY_ID_BYTES] if len(payload) >= SEALED_OVERHEAD_BYTES else None


class Cipher:
    """AES-256-GCM sealing of record payloads under one key (see the module docstring)."""

    def __init__(self, key: bytes, *, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if len(key) != KEY_BYTES:
            raise KeyLoadError(f"the key must be {KEY_BYTES} bytes, not {len(key)}")
        # Imported here, only when encryption is configured: cryptography's AEAD bindings
        # cost ~8 MiB of RSS that an agent without encryption does not need.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        self._aead = AESGCM(key)
        self._random = random_bytes
        self.key_id = _key_id(key)

    def __repr__(self) -> str:
        return f"Cipher(key_id={self.key_id.hex()})"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` (``aad`` authenticated, not stored)."""
        nonce = self._random(NONCE_BYTES)
        return b"".join((self.key_id, nonce, self._aead.encrypt(nonce, plaintext, aad)))

    def open(self, sealed: bytes, aad: bytes, *, where: str, seq: int) -> bytes:
        """Decrypt a payload made by :meth:`seal`; raise :class:`DecryptionError` naming
        ``where`` and ``seq`` if this key cannot (wrong key, tampered, truncated)."""
        written_with = sealed_key_id(sealed)
        if written_with is None:
            raise DecryptionError(where, seq, "sealed payload too short")
        if written_with != self.key_id:
            raise DecryptionError(
                where, seq,
                f"wrong key: written with key id {written_with.hex()}, "
                f"the configured key has id {self.key_id.hex()}",
            )
        nonce = sealed[KEY_ID_BYTES:KEY_ID_BYTES + NONCE_BYTES]
        from cryptography.exceptions import InvalidTag  # loaded with AESGCM already
        try:
            return self._aead.decrypt(nonce, sealed[KEY_ID_BYTES + NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionError(
                where, seq, "authentication failed (tampered record or wrong key)"
            ) from None


def cipher_from_settings(
    *, enabled: bool, key_env: str = "", key_file: str = "",
    environ: Mapping[str, str] | None = None,
) -> Cipher | None:
    """The cipher for ``disk_buffer.encryption`` settings, or None when disabled."""
    if not enabled:
        return None
    return Cipher(load_key(key_env=key_env, key_file=key_file, environ=environ))
