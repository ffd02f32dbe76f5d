"""Uploading a dataset (POST /datasets), and turning a start request's dataset_id into a source.

The upload is parsed as it arrives and spooled to a hidden file in DATA_DIR/uploads in chunks,
so neither memory nor the spool ever holds more than MAX_DATASET_BYTES of it; complete, it goes
to storage under uploads/<dataset_id>/ (DATA_DIR itself, or object storage with STORAGE_URL). It belongs
to the principal who sent it: only they (or an admin) can start a run on it, and to anyone else
it does not exist.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from activities.storage import Storage
from activities.uploads import (
    UPLOAD_SCHEME,
    UploadMissing,
    UploadTooLarge,
    UploadWriter,
    clean_filename,
    dataset_id_from_reference,
    read_record,
    upload_reference,
)
from api.errors import ApiError
from api.openapi_responses import GUARDED, error_responses
from api.schemas import ErrorBody, StartRequest
from api.security import Principal, Role, require_role
from settings import Settings

logger = logging.getLogger("orchestrator.api")
router = APIRouter()

FILE_FIELD = "file"
# Room for the multipart boundaries and part headers around the file itself.
_FORM_OVERHEAD_BYTES = 64 * 1024


class UploadNotFound(ApiError):
    status_code = 404


class UploadTooLargeError(ApiError):
    status_code = 413


class UnsupportedUpload(ApiError):
    status_code = 415


class InvalidUpload(ApiError):
    status_code = 422


class DatasetUpload(BaseModel):
    dataset_id: str = Field(examples=["ds-5f0c6b1e2a9d4c3b8e7f6a10"])
    size_bytes: int
    sha256: str
    filename: str = Field(description="The name the file was sent with; a label only.")


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {"type": "string", "format": "binary", "minLength": 1}
                    },
                }
            }
        },
    }
}


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetUpload,
    tags=["datasets"],
    openapi_extra=_UPLOAD_BODY,
    responses={
        **error_responses(*GUARDED),
        413: {"model": ErrorBody, "description": "Larger than MAX_DATASET_BYTES"},
        415: {"model": ErrorBody, "description": "Not a multipart/form-data upload"},
    },
)
async def upload_dataset(
    request: Request, principal: Annotated[Principal, Depends(require_role(Role.OPERATOR))]
) -> DatasetUpload:
    """Upload a CSV as the form field `file` (`curl -F file=@churn.csv …`); start a run on it
    with `{"dataset_id": …}`. Only you (or an admin) can use it."""
    settings: Settings = request.app.state.settings
    limit = settings.max_dataset_bytes
    too_large = UploadTooLargeError(
        f"The upload is larger than the {limit / 1e6:g} MB limit (MAX_DATASET_BYTES); "
        "select the rows and columns the goal needs, or ask the operator to raise the limit."
    )
    boundary = _boundary(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD_BYTES:
        raise too_large  # refused before a byte is read

    writer = await asyncio.to_thread(
        UploadWriter, request.app.state.storage, settings.uploads_dir, limit
    )
    form = _FileFieldReceiver(writer)
    parser = MultipartParser(boundary, form.callbacks())
    try:
        async for chunk in request.stream():
            await asyncio.to_thread(parser.write, chunk)
        parser.finalize()
        if not form.ended:
            raise InvalidUpload("The upload ended before its multipart form did; send it again.")
        if form.files == 0:
            raise InvalidUpload(
                f"No file in the form field {FILE_FIELD!r}; send it as "
                f"`curl -F {FILE_FIELD}=@churn.csv …`."
            )
        if writer.size_bytes == 0:
            raise InvalidUpload("The uploaded file is empty.")
        record = await asyncio.to_thread(writer.commit, principal.name, form.filename)
    except UploadTooLarge:
        await asyncio.to_thread(writer.discard)
        raise too_large from None
    except MultipartParseError as err:
        await asyncio.to_thread(writer.discard)
        raise InvalidUpload(
            f"The multipart form could not be read ({err}); send the file with "
            f"`curl -F {FILE_FIELD}=@churn.csv …`."
        ) from None
    except BaseException:  # a refusal, a client that went away, or a cancelled request
        await asyncio.to_thread(writer.discard)
        raise
    logger.info(
        "Dataset uploaded",
        extra={"dataset_id": record.dataset_id, "owner": record.owner, "size": record.size_bytes},
    )
    return DatasetUpload(
        dataset_id=record.dataset_id,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        filename=record.filename,
    )


def dataset_url_for_start(body: StartRequest, principal: Principal, storage: Storage) -> str:
    """What the run is given to fetch: the request's URL, or its upload as `upload://…`.

    Someone else's upload answers exactly like a missing one, so ids cannot be probed.
    """
    if body.dataset_id is not None:
        dataset_id = body.dataset_id
    else:
        assert body.dataset_url is not None  # StartRequest requires exactly one of them
        if not body.dataset_url.lower().startswith(UPLOAD_SCHEME):
            return body.dataset_url
        # A run's own reference, copied to run again on the same upload: same owner rule.
        dataset_id = dataset_id_from_reference(body.dataset_url) or body.dataset_url
    try:
        record = read_record(storage, dataset_id)
    except UploadMissing:
        record = None
    if record is None or (record.owner != principal.name and not principal.is_admin):
        raise UploadNotFound(
            f"No uploaded dataset {dataset_id!r} that you can use; upload the file with "
            "POST /datasets and start with the dataset_id it returns."
        )
    return upload_reference(dataset_id)


def _boundary(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UnsupportedUpload(
            "Send the dataset as multipart/form-data with the file in the field "
            f"{FILE_FIELD!r} (curl -F {FILE_FIELD}=@churn.csv …)."
        )
    return boundary


class _FileFieldReceiver:
    """python-multipart callbacks that send the `file` part's bytes to the writer as they come.

    Other form fields are read past and ignored; a second `file` part is refused.
    """

    def __init__(self, writer: UploadWriter) -> None:
        self.writer = writer
        self.files = 0
        self.filename = clean_filename(None)
        self.ended = False
        self._in_file = False
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers.clear()
        self._in_file = False

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if params.get(b"name") != FILE_FIELD.encode():
            return
        self.files += 1
        if self.files > 1:
            raise InvalidUpload(f"Send one file per upload (the form has several {FILE_FIELD!r}).")
        self._in_file = True
        raw_name = params.get(b"filename", b"")
        self.filename = clean_filename(raw_name.decode("utf-8", errors="replace"))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.writer.write(data[start:end])

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.ended = True
