"""Where datasets, uploads and artifacts are kept: a folder (DATA_DIR) or S3-compatible storage.

Keys are relative POSIX names: `datasets/<run>/<file>`, `uploads/<dataset_id>/<file>` and
`artifacts/<run>/<step>/v<n>/<name>`. LocalStorage maps them onto a folder (DATA_DIR itself, so
`make dev` keeps the layout it always had) with atomic writes; S3Storage onto
`s3://bucket/prefix/<key>`, through boto3. With object storage no two processes share a disk:
each keeps only its own scratch and a checksum-keyed cache of the datasets it worked on
(activities/dataset_cache.py).

boto3 rather than fsspec+s3fs or obstore: this code is synchronous and runs in threads, boto3's
client is thread-safe, s3transfer does multipart uploads and downloads of multi-GB datasets by
itself, presigned URLs and the standard AWS credential chain come with it, and it does not pin
botocore the way aiobotocore-based s3fs does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

if TYPE_CHECKING:
    from pydantic import SecretStr

    from settings import Settings

DATASETS_PREFIX = "datasets"
UPLOADS_PREFIX = "uploads"
ARTIFACTS_PREFIX = "artifacts"
DATASET_META_SUFFIX = ".meta.json"  # beside a stored dataset: its size and sha256
TEMP_PREFIX = ".tmp-"  # files being written or staged; listings skip them

_CHUNK = 1024 * 1024


class StorageKeyMissing(LookupError):
    """Nothing is stored under this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"nothing stored under {key!r}")
        self.key = key


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int


def check_key(key: str) -> tuple[str, ...]:
    """The segments of a safe key; ValueError for absolute, climbing or empty names."""
    parts = tuple(key.split("/"))
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in {"", ".", ".."} for part in parts)
    ):
        raise ValueError(f"invalid storage key {key!r}")
    return parts


def join_key(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part.strip("/"))


def dataset_key(workflow_id: str, file_name: str) -> str:
    return join_key(DATASETS_PREFIX, workflow_id, file_name)


class Storage(Protocol):
    """What the service needs of a place to keep files; every method blocks (use a thread)."""

    @property
    def description(self) -> str:
        """Where the files are, for messages to operators."""
        ...

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        """Store a local file's bytes under key (replacing any); `move` may consume the file."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def open_read(self, key: str) -> BinaryIO:
        """A stream of the stored bytes; StorageKeyMissing when there are none."""
        ...

    def get_to_path(self, key: str, path: Path) -> None:
        """Copy the stored bytes into a local file, which appears whole or not at all."""
        ...

    def list(self, prefix: str) -> list[StoredObject]:
        """Every visible object under the folder `prefix` (hidden names skipped), sorted."""
        ...

    def stat(self, key: str) -> StoredObject | None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under the folder `prefix`."""
        ...

    def local_path(self, key: str, *, within: str | None = None) -> Path | None:
        """The file itself when the backend is a local folder (None otherwise, or when the key
        names no regular file, or its real path leaves the folder `within`)."""
        ...

    def replace_prefix(self, prefix: str) -> AbstractContextManager[Path]:
        """An empty local folder whose files become everything under prefix when the block
        ends without an exception; an exception leaves the previous contents alone."""
        ...

    def presigned_url(
        self, key: str, *, expires_seconds: int, filename: str, content_type: str
    ) -> str | None:
        """A time-limited download URL for the object, or None where the backend has none."""
        ...


# --- A local folder ---------------------------------------------------------------------------


def fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class LocalStorage:
    """Keys are files under root; every write lands in a temporary file and is renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def description(self) -> str:
        return str(self.root)

    def path_of(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        target = self.path_of(key)
        if target.exists() and os.path.samefile(target, path):
            return  # already in place: intake wrote it straight into the store's folder
        if move:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            return
        self._place(target, lambda temp: shutil.copyfile(path, temp, follow_symlinks=False))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._place(self.path_of(key), lambda temp: fsync_write(temp, data))

    def open_read(self, key: str) -> BinaryIO:
        path = self.local_path(key)
        if path is None:
            raise StorageKeyMissing(key)
        return path.open("rb")

    def get_to_path(self, key: str, path: Path) -> None:
        source = self.local_path(key)
        if source is None:
            raise StorageKeyMissing(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            shutil.copyfile(source, temp)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    def list(self, prefix: str) -> list[StoredObject]:
        folder = self.path_of(prefix)
        return [
            StoredObject(join_key(prefix, name), (folder / name).stat().st_size)
            for name in iter_regular_files(folder)
        ]

    def stat(self, key: str) -> StoredObject | None:
        path = self.local_path(key)
        return None if path is None else StoredObject(key, path.stat().st_size)

    def exists(self, key: str) -> bool:
        return self.local_path(key) is not None

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path_of(prefix), ignore_errors=True)

    def local_path(self, key: str, *, within: str | None = None) -> Path | None:
        try:
            boundary = (self.path_of(within) if within else self.root).resolve(strict=True)
            # resolve() follows every symlink on the way, so the containment check below sees
            # where the file really is, not where its name says it is.
            real = self.path_of(key).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            return None
        if not real.is_relative_to(boundary) or not real.is_file():
            return None
        return real

    @contextmanager
    def replace_prefix(self, prefix: str) -> Iterator[Path]:
        # Two renames: a reader may briefly find the folder missing but never half-written.
        target = self.path_of(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would otherwise become the folder's mode
        try:
            yield staging
            retired = target.parent / f"{TEMP_PREFIX}old-{uuid.uuid4().hex}"
            if target.exists():
                os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def presigned_url(
        self, key: str, *, expires_seconds: int, filename: str, content_type: str
    ) -> str | None:
        return None

    def _place(self, target: Path, fill: Any) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fill(temp)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)


def iter_regular_files(folder: Path) -> Iterator[str]:
    """Relative POSIX names of the regular files under a folder, sorted, never via symlinks.

    Names starting with "." (temporary and staging files, caches that tools drop into HOME) are
    not outputs and are skipped, as are symlinks to files or folders.
    """
    if not folder.is_dir() or folder.is_symlink():
        return
    found: list[str] = []
    for current, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for filename in filenames:
            if filename.startswith("."):
                continue
            path = Path(current) / filename
            if path.is_symlink() or not path.is_file():
                continue
            found.append(path.relative_to(folder).as_posix())
    yield from sorted(found)


# --- S3-compatible object storage -------------------------------------------------------------


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.lower().startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {url!r}")
        return cls(bucket, prefix.strip("/"))


class S3Storage:
    """Keys are objects under s3://bucket/prefix/; boto3's client is shared by threads."""

    def __init__(self, location: S3Location, client: Any, staging_dir: Path) -> None:
        self.location = location
        self.client = client
        self.staging_dir = staging_dir  # local folder for replace_prefix's staging

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        import boto3
        from botocore.config import Config

        # Empty values (a compose file's unset ${VAR:-}) mean unset, like absent ones.
        secret = _secret(settings.storage_secret_access_key)
        key_id = _secret(settings.storage_access_key_id)
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.storage_endpoint_url or None,
            region_name=settings.storage_region or None,
            # Unset: boto3's own chain (AWS_* variables, profiles, the pod's role).
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(
                signature_version="s3v4",
                # MinIO and most S3-compatible servers want the bucket in the path.
                s3={"addressing_style": "path" if settings.storage_endpoint_url else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        staging = settings.data_dir / "scratch" / "storage-staging"
        return cls(S3Location.parse(settings.storage_url), client, staging)

    @property
    def description(self) -> str:
        return f"s3://{self.location.bucket}/{self.location.prefix}".rstrip("/")

    def object_key(self, key: str) -> str:
        check_key(key)
        return join_key(self.location.prefix, key)

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        # s3transfer splits large files into a multipart upload by itself.
        self.client.upload_file(str(path), self.location.bucket, self.object_key(key))
        if move:
            path.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.location.bucket, Key=self.object_key(key), Body=data)

    def open_read(self, key: str) -> BinaryIO:
        try:
            response = self.client.get_object(Bucket=self.location.bucket, Key=self.object_key(key))
        except Exception as error:
            raise _missing_or(error, key) from None
        return cast(BinaryIO, response["Body"])  # botocore's StreamingBody is an IOBase

    def get_to_path(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            self.client.download_file(self.location.bucket, self.object_key(key), str(temp))
            os.replace(temp, path)
        except Exception as error:
            raise _missing_or(error, key) from None
        finally:
            temp.unlink(missing_ok=True)

    def list(self, prefix: str) -> list[StoredObject]:
        folder = self.object_key(prefix) + "/"
        skip = len(self.location.prefix) + 1 if self.location.prefix else 0
        found: list[StoredObject] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=folder):
            for item in page.get("Contents", []):
                key = str(item["Key"])[skip:]
                relative = key[len(prefix) + 1 :].split("/")
                if any(part.startswith(".") or part == "__pycache__" for part in relative):
                    continue
                found.append(StoredObject(key, int(item["Size"])))
        return sorted(found, key=lambda item: item.key)

    def stat(self, key: str) -> StoredObject | None:
        try:
            head = self.client.head_object(Bucket=self.location.bucket, Key=self.object_key(key))
        except Exception as error:
            if isinstance(_missing_or(error, key), StorageKeyMissing):
                return None
            raise
        return StoredObject(key, int(head["ContentLength"]))

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.location.bucket, Key=self.object_key(key))

    def delete_prefix(self, prefix: str) -> None:
        for item in self.list(prefix):
            self.delete(item.key)

    def local_path(self, key: str, *, within: str | None = None) -> Path | None:
        return None

    @contextmanager
    def replace_prefix(self, prefix: str) -> Iterator[Path]:
        # Object storage has no rename: the new files are uploaded, then the old ones that the
        # new set does not overwrite are deleted. A reader listing in between sees both.
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}stage-", dir=self.staging_dir))
        try:
            yield staging
            previous = {item.key for item in self.list(prefix)}
            uploaded = set()
            for name in iter_regular_files(staging):
                key = join_key(prefix, name)
                self.put_file(key, staging / name)
                uploaded.add(key)
            for key in sorted(previous - uploaded):
                self.delete(key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def presigned_url(
        self, key: str, *, expires_seconds: int, filename: str, content_type: str
    ) -> str | None:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.location.bucket,
                    "Key": self.object_key(key),
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=expires_seconds,
            )
        )


def _secret(value: SecretStr | None) -> str | None:
    return (value.get_secret_value() or None) if value is not None else None


def _missing_or(error: Exception, key: str) -> Exception:
    """StorageKeyMissing for S3's "no such key" answers; the error itself otherwise."""
    response = getattr(error, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return StorageKeyMissing(key) if code in {"404", "NoSuchKey", "NotFound"} else error


def storage_from_settings(settings: Settings) -> Storage:
    """DATA_DIR itself when STORAGE_URL is empty, else the S3-compatible store it names."""
    if not settings.storage_url:
        return LocalStorage(settings.data_dir)
    return S3Storage.from_settings(settings)


def is_shared_folder(storage: Storage) -> bool:
    """Whether the backend is a folder every process reads directly (no cache needed)."""
    return isinstance(storage, LocalStorage)


# --- Datasets: stored once by intake, cached by checksum on every worker that runs them -------


def publish_dataset(storage: Storage, workflow_id: str, path: Path, sha256: str) -> str:
    """Store intake's file (and its checksum beside it) for other workers; its key."""
    key = dataset_key(workflow_id, path.name)
    if storage.local_path(key) == path.resolve():
        return key  # the store's folder is where intake wrote it: nothing to copy
    storage.put_file(key, path)
    size = path.stat().st_size
    meta = json.dumps({"sha256": sha256, "size_bytes": size}).encode("utf-8")
    storage.put_bytes(key + DATASET_META_SUFFIX, meta)
    return key


def stored_dataset_sha256(storage: Storage, key: str) -> str:
    """The checksum intake recorded beside a stored dataset."""
    with storage.open_read(key + DATASET_META_SUFFIX) as handle:
        meta = json.loads(handle.read(64 * 1024))
    return str(meta["sha256"])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
