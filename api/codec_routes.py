"""The Temporal remote codec endpoint: the Web UI and `temporal --codec-endpoint` decrypt here.

`POST /codec/decode` and `POST /codec/encode` take and return `{"payloads": [...]}` in the
protobuf JSON form Temporal's tools send (metadata values and data base64). The browser calls
them from the Web UI's origin, so these paths, and only these, answer CORS preflights.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload

from api.errors import ApiError, BadRequest
from api.openapi_responses import GUARDED, error_responses
from api.security import Role, require_role
from payload_codec import SETTING, EncryptionCodec, PayloadDecryptionError, payload_codec
from settings import Settings

CODEC_PREFIX = "/codec"
# What the Web UI sends: its user's token (codec.passAccessToken), JSON, and the namespace.
CORS_HEADERS = ["Authorization", "Content-Type", "X-Namespace"]

_RESPONSES = error_responses(*GUARDED, 400, 404)
_RESPONSES[400]["description"] = "A payload cannot be decrypted, or another namespace is named"
_RESPONSES[404]["description"] = "Payload encryption is not configured (PAYLOAD_ENCRYPTION_KEYS)"

router = APIRouter(
    prefix=CODEC_PREFIX,
    tags=["codec"],
    dependencies=[Depends(require_role(Role.VIEWER))],
    responses=_RESPONSES,
)


class CodecNotConfigured(ApiError):
    status_code = 404


class CodecPayload(BaseModel):
    """One `temporal.api.common.v1.Payload` in protobuf JSON: every value base64."""

    metadata: dict[str, str] = Field(default_factory=dict)
    data: str = ""


class CodecPayloads(BaseModel):
    payloads: list[CodecPayload]


def _decode_base64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"Invalid request: {where} is not base64.") from None


def _to_proto(payloads: CodecPayloads) -> list[Payload]:
    return [
        Payload(
            metadata={
                key: _decode_base64(value, f"payloads.{index}.metadata.{key}")
                for key, value in item.metadata.items()
            },
            data=_decode_base64(item.data, f"payloads.{index}.data"),
        )
        for index, item in enumerate(payloads.payloads)
    ]


def _to_json(payloads: list[Payload]) -> CodecPayloads:
    return CodecPayloads(
        payloads=[
            CodecPayload(
                metadata={
                    key: base64.b64encode(value).decode() for key, value in item.metadata.items()
                },
                data=base64.b64encode(item.data).decode(),
            )
            for item in payloads
        ]
    )


def _codec(
    request: Request, x_namespace: Annotated[str | None, Header(max_length=1000)] = None
) -> EncryptionCodec:
    settings: Settings = request.app.state.settings
    codec: EncryptionCodec | None = request.app.state.payload_codec
    if codec is None:
        raise CodecNotConfigured(
            f"Payload encryption is off ({SETTING} is not set), so there is nothing to encode "
            "or decode; remove the codec endpoint from the Web UI or CLI, or set the keys."
        )
    # Another namespace's payloads were sealed with keys this service does not hold.
    if x_namespace and x_namespace != settings.temporal_namespace:
        raise BadRequest(
            f"This codec serves namespace {settings.temporal_namespace!r}, not {x_namespace!r}."
        )
    return codec


@router.post("/decode", response_model=CodecPayloads)
async def decode_payloads(
    body: CodecPayloads, codec: Annotated[EncryptionCodec, Depends(_codec)]
) -> CodecPayloads:
    """Decrypt payloads for display; payloads that are not encrypted come back unchanged."""
    try:
        return _to_json(await codec.decode(_to_proto(body)))
    except PayloadDecryptionError as err:
        raise BadRequest(str(err)) from err


@router.post("/encode", response_model=CodecPayloads)
async def encode_payloads(
    body: CodecPayloads, codec: Annotated[EncryptionCodec, Depends(_codec)]
) -> CodecPayloads:
    """Encrypt payloads with the current key (what the UI or CLI sends to a run)."""
    return _to_json(await codec.encode(_to_proto(body)))


class CodecCors:
    """CORS for the codec paths only; the rest of the API is not meant to be called by browsers."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=CORS_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == CODEC_PREFIX or path.startswith(CODEC_PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install_codec_endpoint(app: FastAPI, settings: Settings) -> None:
    """Add the codec routes and their CORS; malformed keys stop the API here, at start-up."""
    app.state.payload_codec = payload_codec(settings)
    origins = [origin.strip() for origin in settings.codec_cors_origins.split(",")]
    app.add_middleware(CodecCors, origins=[origin for origin in origins if origin])
    app.include_router(router)
