"""Payload encryption: the codec, the key setting, the converter and the /codec HTTP endpoint."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from hashlib import sha256

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from api.main import create_app
from payload_codec import (
    ENCRYPTED_ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    EncryptionKeyError,
    PayloadDecryptionError,
    data_converter,
    parse_keys,
)
from settings import Settings
from workflows.models import RunInput, RunOptions

SECRET_GOAL = "predict churn for ACME-SECRET-4711"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


OLD_KEY, NEW_KEY = new_key(), new_key()


def codec(setting: str) -> EncryptionCodec:
    return EncryptionCodec(parse_keys(setting))


def plain_payload(text: str = SECRET_GOAL) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([text])[0]


# --- The codec ------------------------------------------------------------------------------


async def test_a_payload_round_trips_and_is_unreadable_in_between():
    sealer = codec(f"k1:{OLD_KEY}")
    original = plain_payload()

    [encrypted] = await sealer.encode([original])

    assert encrypted.metadata["encoding"] == ENCRYPTED_ENCODING
    assert encrypted.metadata[KEY_ID_METADATA] == b"k1"
    assert b"ACME-SECRET-4711" not in encrypted.SerializeToString()
    assert b"json/plain" not in encrypted.SerializeToString()  # the inner metadata is sealed too
    assert await sealer.decode([encrypted]) == [original]


async def test_the_same_payload_encrypts_differently_each_time():
    sealer = codec(f"k1:{OLD_KEY}")
    first, second = await sealer.encode([plain_payload(), plain_payload()])
    assert first.data != second.data  # a fresh nonce per payload


async def test_after_rotation_old_payloads_decrypt_and_new_ones_use_the_new_key():
    before = codec(f"k1:{OLD_KEY}")
    after = codec(f"k2:{NEW_KEY},k1:{OLD_KEY}")
    [written_before] = await before.encode([plain_payload("written before")])

    [written_after] = await after.encode([plain_payload("written after")])

    assert written_after.metadata[KEY_ID_METADATA] == b"k2"
    assert await after.decode([written_before]) == [plain_payload("written before")]
    assert await after.decode([written_after]) == [plain_payload("written after")]
    # A worker not yet given the new key cannot read what the rotated one wrote, and says so.
    with pytest.raises(PayloadDecryptionError, match="'k2'"):
        await before.decode([written_after])


async def test_a_tampered_ciphertext_is_refused():
    sealer = codec(f"k1:{OLD_KEY}")
    [encrypted] = await sealer.encode([plain_payload()])
    data = bytearray(encrypted.data)
    data[-5] ^= 0x01
    tampered = Payload(metadata=dict(encrypted.metadata), data=bytes(data))

    with pytest.raises(PayloadDecryptionError, match="'k1' does not authenticate"):
        await sealer.decode([tampered])


async def test_a_payload_relabelled_with_another_configured_key_id_is_refused():
    # Both keys equal: only the key id bound into the ciphertext tells the labels apart.
    sealer = codec(f"k1:{OLD_KEY},k2:{OLD_KEY}")
    [encrypted] = await sealer.encode([plain_payload()])
    relabelled = Payload(
        metadata={**encrypted.metadata, KEY_ID_METADATA: b"k2"}, data=encrypted.data
    )
    with pytest.raises(PayloadDecryptionError, match="does not authenticate"):
        await sealer.decode([relabelled])


async def test_an_unknown_key_id_names_the_key_id_and_the_setting():
    [encrypted] = await codec(f"gone:{OLD_KEY}").encode([plain_payload()])
    with pytest.raises(PayloadDecryptionError) as caught:
        await codec(f"k2:{NEW_KEY}").decode([encrypted])
    message = str(caught.value)
    assert "'gone'" in message
    assert "PAYLOAD_ENCRYPTION_KEYS" in message
    assert "k2" in message  # what is configured, so the operator sees what is missing


async def test_unencrypted_payloads_pass_through_decode():
    # Runs started before encryption was on, and `temporal workflow signal --input`.
    original = plain_payload()
    assert await codec(f"k1:{OLD_KEY}").decode([original]) == [original]


# --- The setting ----------------------------------------------------------------------------


def test_parse_keys_keeps_the_order_so_the_first_key_writes():
    keys = parse_keys(f" k2:{NEW_KEY} , k1:{OLD_KEY}")
    assert list(keys) == ["k2", "k1"]
    assert keys["k1"] == base64.b64decode(OLD_KEY)


SHORT_KEY = base64.b64encode(os.urandom(16)).decode()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("", "set but empty"),
        (" , ", "set but empty"),
        (OLD_KEY, "entry 1 is not `key_id:base64-key`"),
        (f"k1:{OLD_KEY},k2", "entry 2 is not `key_id:base64-key`"),
        (f":{OLD_KEY}", "entry 1 is not `key_id:base64-key`"),
        ("k1:", "entry 1 is not `key_id:base64-key`"),
        ("k1:not*base64*at*all", "key id 'k1'): the key is not valid base64"),
        (f"k1:{SHORT_KEY}", "the key is 16 bytes; AES-256 needs 32"),
        (f"k1:{OLD_KEY},k1:{NEW_KEY}", "key id 'k1' is listed twice"),
        (f"my key:{OLD_KEY}", "key id 'my key' may only use letters"),
    ],
)
def test_a_malformed_setting_says_what_is_wrong_without_echoing_keys(setting: str, expected: str):
    with pytest.raises(EncryptionKeyError) as caught:
        parse_keys(setting)
    message = str(caught.value)
    assert expected in message
    assert "PAYLOAD_ENCRYPTION_KEYS" in message
    for secret in (OLD_KEY, NEW_KEY, SHORT_KEY, "not*base64*at*all"):
        assert secret not in message


def test_the_setting_is_secret_in_settings():
    settings = Settings(payload_encryption_keys=f"k1:{OLD_KEY}")
    assert OLD_KEY not in repr(settings)
    assert OLD_KEY not in str(settings.model_dump())


# --- The data converter ---------------------------------------------------------------------


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_without_keys_the_converter_is_the_plain_pydantic_one(unset: str | None):
    assert data_converter(Settings(payload_encryption_keys=unset)) is pydantic_data_converter  # type: ignore[arg-type]


async def test_with_keys_run_inputs_and_failure_messages_are_encrypted():
    converter = data_converter(Settings(payload_encryption_keys=f"k1:{OLD_KEY}"))
    run_input = RunInput(
        user_goal=SECRET_GOAL, dataset_url="https://example.com/acme.csv", options=RunOptions()
    )

    [payload] = await converter.encode([run_input])
    assert payload.metadata["encoding"] == ENCRYPTED_ENCODING
    assert b"ACME-SECRET-4711" not in payload.SerializeToString()
    assert await converter.decode([payload], [RunInput]) == [run_input]

    failure = Failure()
    await converter.encode_failure(ApplicationError(f"cannot {SECRET_GOAL}"), failure)
    assert b"ACME-SECRET-4711" not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert str(decoded) == f"cannot {SECRET_GOAL}"


def test_malformed_keys_stop_the_converter_with_the_message():
    with pytest.raises(EncryptionKeyError, match="entry 1"):
        data_converter(Settings(payload_encryption_keys="oops"))


# --- The /codec endpoint --------------------------------------------------------------------

UI_ORIGIN = "http://localhost:8233"


def app_with(**settings: object) -> FastAPI:
    return create_app(Settings(host="127.0.0.1", **settings))  # type: ignore[arg-type]


@pytest.fixture
def api() -> Iterator[TestClient]:
    with TestClient(app_with(payload_encryption_keys=f"k2:{NEW_KEY},k1:{OLD_KEY}")) as client:
        yield client


def wire(*payloads: Payload) -> dict[str, object]:
    """The body exactly as Temporal's Go tools (CLI, Web UI server) marshal it: protobuf JSON."""
    return MessageToDict(Payloads(payloads=list(payloads)))


def from_wire(body: dict[str, object]) -> list[Payload]:
    parsed = Payloads()
    ParseDict(body, parsed)
    return list(parsed.payloads)


def test_codec_endpoint_encodes_and_decodes_the_temporal_wire_format(api: TestClient):
    original = plain_payload()
    headers = {"X-Namespace": "default"}

    encoded = api.post("/codec/encode", json=wire(original), headers=headers)
    assert encoded.status_code == 200, encoded.text
    [sealed] = from_wire(encoded.json())
    assert sealed.metadata[KEY_ID_METADATA] == b"k2"
    assert b"ACME-SECRET-4711" not in sealed.SerializeToString()

    decoded = api.post("/codec/decode", json=encoded.json(), headers=headers)
    assert decoded.status_code == 200, decoded.text
    assert from_wire(decoded.json()) == [original]


async def test_codec_endpoint_decodes_what_the_old_key_wrote(api: TestClient):
    [old] = await codec(f"k1:{OLD_KEY}").encode([plain_payload()])
    decoded = api.post("/codec/decode", json=wire(old))
    assert decoded.status_code == 200
    assert from_wire(decoded.json()) == [plain_payload()]


async def test_codec_endpoint_names_an_unknown_key_id(api: TestClient):
    [foreign] = await codec(f"k9:{new_key()}").encode([plain_payload()])
    response = api.post("/codec/decode", json=wire(foreign))
    assert response.status_code == 400
    assert "'k9'" in response.json()["detail"]
    assert "PAYLOAD_ENCRYPTION_KEYS" in response.json()["detail"]


def test_codec_endpoint_refuses_bad_base64_and_other_namespaces(api: TestClient):
    bad = api.post("/codec/decode", json={"payloads": [{"metadata": {}, "data": "%%%"}]})
    assert bad.status_code == 422
    assert "payloads.0.data is not base64" in bad.json()["detail"]
    assert api.post("/codec/decode", json={"nothing": []}).status_code == 422
    other = api.post("/codec/decode", json=wire(plain_payload()), headers={"X-Namespace": "prod"})
    assert other.status_code == 400
    assert "'default', not 'prod'" in other.json()["detail"]


def test_codec_endpoint_is_404_when_encryption_is_off():
    with TestClient(app_with(payload_encryption_keys=None)) as client:
        response = client.post("/codec/decode", json=wire(plain_payload()))
    assert response.status_code == 404
    assert "PAYLOAD_ENCRYPTION_KEYS" in response.json()["detail"]


def test_the_web_ui_origin_passes_the_codec_preflight(api: TestClient):
    preflight = api.options(
        "/codec/decode",
        headers={
            "Origin": UI_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
    assert preflight.headers["access-control-allow-credentials"] == "true"
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "x-namespace"):
        assert header in allowed
    answer = api.post("/codec/decode", json=wire(plain_payload()), headers={"Origin": UI_ORIGIN})
    assert answer.headers["access-control-allow-origin"] == UI_ORIGIN


def test_other_origins_and_other_paths_get_no_cors(api: TestClient):
    evil = api.options(
        "/codec/decode",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    # The rest of the API is not for browsers on other origins.
    elsewhere = api.options(
        "/workflow/start",
        headers={"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in elsewhere.headers
    listing = api.get("/openapi.json", headers={"Origin": UI_ORIGIN})
    assert "access-control-allow-origin" not in listing.headers


def test_codec_cors_origins_come_from_the_setting():
    app = app_with(payload_encryption_keys=f"k1:{OLD_KEY}", codec_cors_origins="https://ui.corp")
    with TestClient(app) as client:
        ok = client.options(
            "/codec/encode",
            headers={"Origin": "https://ui.corp", "Access-Control-Request-Method": "POST"},
        )
        default = client.options(
            "/codec/encode",
            headers={"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"},
        )
    assert ok.headers["access-control-allow-origin"] == "https://ui.corp"
    assert "access-control-allow-origin" not in default.headers


def test_the_api_refuses_to_start_with_malformed_keys():
    with pytest.raises(EncryptionKeyError, match="entry 1"):
        app_with(payload_encryption_keys="k1")


def test_codec_routes_are_in_the_openapi_docs(api: TestClient):
    paths = api.get("/openapi.json").json()["paths"]
    assert "/codec/decode" in paths and "/codec/encode" in paths


def test_with_api_keys_the_codec_needs_a_key(tmp_path):
    viewer_key = f"orc_{new_key()}"
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(
        json.dumps(
            [
                {
                    "name": "ui",
                    "roles": ["viewer"],
                    "key_sha256": sha256(viewer_key.encode()).hexdigest(),
                }
            ]
        )
    )
    app = app_with(
        payload_encryption_keys=f"k1:{OLD_KEY}", auth_mode="api_key", api_keys_file=keys_file
    )
    body = wire(plain_payload())
    with TestClient(app) as client:
        anonymous = client.post("/codec/decode", json=body, headers={"Origin": UI_ORIGIN})
        stranger = client.post(
            "/codec/decode", json=body, headers={"Authorization": "Bearer orc_nobody"}
        )
        viewer = client.post(
            "/codec/decode", json=body, headers={"Authorization": f"Bearer {viewer_key}"}
        )
    assert anonymous.status_code == 401
    # The refusal carries CORS headers, so the Web UI can tell the user why.
    assert anonymous.headers["access-control-allow-origin"] == UI_ORIGIN
    assert stranger.status_code == 401
    assert viewer.status_code == 200
    assert from_wire(viewer.json()) == [plain_payload()]
