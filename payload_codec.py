"""Encryption of every Temporal payload (AES-GCM), so the server's history holds nothing in clear.

`PAYLOAD_ENCRYPTION_KEYS=new-id:<base64 32 bytes>,old-id:<base64 32 bytes>`: the first key
encrypts, every listed key decrypts, so a key can be rotated while runs are in flight. Each
encrypted payload names its key id in its metadata. Search attributes are never encoded by
Temporal (the server must read them to list and filter runs), so nothing secret may go there.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

if TYPE_CHECKING:
    from settings import Settings

SETTING = "PAYLOAD_ENCRYPTION_KEYS"
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the size AES-GCM is specified for; random per payload
# Key ids travel in every payload's metadata and in error messages; keep them short and plain.
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAKE_A_KEY = 'python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"'


class EncryptionKeyError(ValueError):
    """The setting is malformed. Messages name key ids and positions, never key material."""


class PayloadDecryptionError(ValueError):
    """A payload cannot be decrypted: its key is not configured, or it was altered."""


def parse_keys(setting: str) -> dict[str, bytes]:
    """`id:base64,…` → {key id: 32-byte key}, in the setting's order (the first one encrypts)."""
    keys: dict[str, bytes] = {}
    entries = [entry.strip() for entry in setting.split(",")]
    if not any(entries):
        raise EncryptionKeyError(
            f"{SETTING} is set but empty. Give one or more `key_id:base64-key` entries, comma "
            f"separated, or unset it to turn encryption off. Make a key with: {MAKE_A_KEY}"
        )
    for position, entry in enumerate(entries, start=1):
        key_id, colon, encoded = (part.strip() for part in entry.partition(":"))
        where = f"{SETTING} entry {position}"
        if not colon or not key_id or not encoded:
            raise EncryptionKeyError(
                f"{where} is not `key_id:base64-key` (for example `k2026:<44 base64 chars>`). "
                f"Make a key with: {MAKE_A_KEY}"
            )
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise EncryptionKeyError(
                f"{where}: key id {key_id!r} may only use letters, digits, '.', '_' and '-' "
                "(at most 64 characters)."
            )
        if key_id in keys:
            raise EncryptionKeyError(f"{where}: key id {key_id!r} is listed twice.")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionKeyError(
                f"{where} (key id {key_id!r}): the key is not valid base64. "
                f"Make a key with: {MAKE_A_KEY}"
            ) from None  # the decoder's message would quote the key
        if len(key) != KEY_BYTES:
            raise EncryptionKeyError(
                f"{where} (key id {key_id!r}): the key is {len(key)} bytes; AES-256 needs "
                f"{KEY_BYTES}. Make a key with: {MAKE_A_KEY}"
            )
        keys[key_id] = key
    return keys


class EncryptionCodec(PayloadCodec):
    """Encrypts with the first key, decrypts with any key the payload names.

    Payloads that are not encrypted pass through decode unchanged: runs started before
    encryption was turned on, and signals sent with `temporal workflow signal --input`, keep
    working. Encrypting them is what matters; refusing plain input would protect nothing.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise EncryptionKeyError(f"{SETTING} names no key.")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.writing_key_id = next(iter(keys))

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.writing_key_id
        nonce = os.urandom(NONCE_BYTES)
        # The whole payload, metadata included, is sealed; binding the key id as associated
        # data means a payload relabelled with another key id fails instead of misleading.
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"A payload is encrypted with key id {key_id!r}, which is not in {SETTING} "
                f"(configured: {', '.join(self.key_ids)}). Add that key back to {SETTING} "
                "after the current first key, on the worker and the API."
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise PayloadDecryptionError(
                f"A payload encrypted with key id {key_id!r} does not authenticate: it was "
                f"altered, or {SETTING} holds a different key under that id."
            ) from None
        return Payload.FromString(plain)


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The codec for these settings, or None when encryption is off (unset or empty)."""
    # Empty counts as unset: compose files pass `PAYLOAD_ENCRYPTION_KEYS: ${…:-}` through.
    setting = settings.payload_encryption_keys
    if setting is None or not setting.get_secret_value().strip():
        return None
    return EncryptionCodec(parse_keys(setting.get_secret_value()))


def data_converter(settings: Settings) -> DataConverter:
    """The converter every client of the service uses: pydantic JSON, encrypted when keyed."""
    codec = payload_codec(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        # Failure messages and stack traces move into an encoded payload too; they often quote
        # the goal, a column name or the code that failed.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
