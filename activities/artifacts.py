"""The artifact store: a run's files, at <workflow_id>/<step>/v<version>/<name> in storage.

The storage is a folder (the default, DATA_DIR/artifacts) or S3-compatible object storage
(activities/storage.py); names are checked the same way for both, before any backend sees them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote

from activities.storage import (
    TEMP_PREFIX,
    LocalStorage,
    Storage,
    StorageKeyMissing,
    iter_regular_files,
    join_key,
)
from workflows.models import ArtifactRef

__all__ = [
    "ArtifactNotFound",
    "ArtifactStore",
    "content_type_for",
    "is_valid_workflow_id",
    "iter_regular_files",
]

CONTENT_TYPES: dict[str, str] = {
    ".py": "text/x-python",
    ".json": "application/json",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".html": "text/html",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".joblib": "application/octet-stream",
    ".pkl": "application/octet-stream",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Workflow ids become directory names, so only a conservative alphabet is accepted; anything
# else (slashes, dots-only names, control characters) can never name a run folder.
_WORKFLOW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@=+-]{0,199}")
# Files being written or staged start with this prefix; listings skip them.
_TEMP_PREFIX = TEMP_PREFIX

_ArtifactRefs = list[ArtifactRef]  # `list` is also a method name on the store


class ArtifactNotFound(LookupError):
    """No such artifact, or the name tried to leave the run's folder (reported the same way)."""

    def __init__(self, workflow_id: str, name: str) -> None:
        super().__init__(f"no artifact {name!r} in run {workflow_id!r}")
        self.workflow_id = workflow_id
        self.name = name


def content_type_for(name: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), DEFAULT_CONTENT_TYPE)


def is_valid_workflow_id(workflow_id: str) -> bool:
    return bool(_WORKFLOW_ID.fullmatch(workflow_id)) and workflow_id not in {".", ".."}


def _relative_parts(name: str) -> tuple[str, ...] | None:
    """The segments of a safe relative name, or None if it is absolute or climbs out."""
    if not name or "\x00" in name or "\\" in name:
        return None
    # A name is used verbatim; one that still contains an encoded traversal is refused too,
    # so a later layer that decodes once more cannot turn it into a real "..".
    for candidate in (name, unquote(name)):
        if candidate.startswith("/"):
            return None
        if any(part in {"", ".", ".."} for part in candidate.split("/")):
            return None
    return tuple(name.split("/"))


def _visible_parts(name: str) -> tuple[str, ...] | None:
    """As _relative_parts, also refusing hidden names: temporary files, which listings skip."""
    parts = _relative_parts(name)
    if parts is None or any(part.startswith(".") for part in parts):
        return None
    return parts


class ArtifactStore:
    """Files of each run, grouped by step and version; writes are atomic, reads are confined.

    `ArtifactStore(folder)` keeps them in a folder; `ArtifactStore(storage, "artifacts")` under
    that prefix of any Storage (the worker and the API build it from the settings).
    """

    def __init__(self, root: Path | Storage, prefix: str = "") -> None:
        self.storage: Storage = LocalStorage(root) if isinstance(root, Path) else root
        self.prefix = prefix
        # The folder of the runs when the storage is one (tests and the local tools look there).
        self.root: Path | None = (
            self.storage.path_of(prefix) if prefix else self.storage.root
        ) if isinstance(self.storage, LocalStorage) else None  # fmt: skip

    # --- Addressing -------------------------------------------------------------------------

    def run_key(self, workflow_id: str) -> str:
        if not is_valid_workflow_id(workflow_id):
            raise ValueError(f"invalid workflow id {workflow_id!r}")
        return join_key(self.prefix, workflow_id)

    def version_key(self, workflow_id: str, step: str, version: int) -> str:
        if _visible_parts(str(step)) is None or "/" in str(step):
            raise ValueError(f"invalid step name {step!r}")
        if version < 0:
            raise ValueError(f"invalid version {version}")
        return join_key(self.run_key(workflow_id), str(step), f"v{version}")

    # --- Writing ----------------------------------------------------------------------------

    def write_bytes(
        self, workflow_id: str, step: str, version: int, name: str, data: bytes
    ) -> ArtifactRef:
        """Write one file atomically: a retried step replaces it, a reader never sees half."""
        key = join_key(self.version_key(workflow_id, step, version), _checked_name(name))
        self.storage.put_bytes(key, data)
        return self._ref(workflow_id, key, len(data))

    def write_text(
        self, workflow_id: str, step: str, version: int, name: str, text: str
    ) -> ArtifactRef:
        return self.write_bytes(workflow_id, step, version, name, text.encode("utf-8"))

    def write_run_file(self, workflow_id: str, name: str, data: bytes) -> ArtifactRef:
        """A file of the run outside the step folders (a prediction request's rows, say)."""
        key = join_key(self.run_key(workflow_id), _checked_name(name))
        self.storage.put_bytes(key, data)
        return self._ref(workflow_id, key, len(data))

    def delete_run_folder(self, workflow_id: str, name: str) -> None:
        """Remove a folder of the run outside the step folders (a finished predict request's)."""
        self.storage.delete_prefix(join_key(self.run_key(workflow_id), _checked_name(name)))

    def import_dir(self, workflow_id: str, step: str, version: int, source: Path) -> _ArtifactRefs:
        """Copy a folder's regular files into a version, each atomically, keeping subfolders.

        Symlinks are skipped rather than followed: a link made by generated code could point at
        any file the worker can read, which would then be served as an artifact.
        """
        base = self.version_key(workflow_id, step, version)
        refs: _ArtifactRefs = []
        for relative in iter_regular_files(source):
            key = join_key(base, _checked_name(relative))
            self.storage.put_file(key, source / relative)
            refs.append(self._ref(workflow_id, key, (source / relative).stat().st_size))
        return refs

    @contextmanager
    def replace_version(self, workflow_id: str, step: str, version: int) -> Iterator[Path]:
        """Yield an empty local staging folder that becomes the whole version when the block
        succeeds.

        A re-run of a step therefore leaves exactly its own files (none from an earlier attempt)
        and an exception leaves the previous contents untouched. In a folder the swap is two
        renames, so a reader may briefly find the version missing but never half-written.
        """
        with self.storage.replace_prefix(self.version_key(workflow_id, step, version)) as stage:
            yield stage

    # --- Reading ----------------------------------------------------------------------------

    def resolve(self, workflow_id: str, name: str) -> Path:
        """The real path of an artifact in a folder store, or ArtifactNotFound for unknown or
        escaping names (and always in object storage: read it with `open` there)."""
        key = self._key_of(workflow_id, name)
        # The real path must stay inside the run's folder: a symlink to elsewhere is not found.
        path = self.storage.local_path(key, within=self.run_key(workflow_id))
        if path is None:
            raise ArtifactNotFound(workflow_id, name)
        return path

    def open(self, workflow_id: str, name: str) -> tuple[BinaryIO, int]:
        """A stream of an artifact's bytes and its size; ArtifactNotFound as for resolve."""
        key = self._key_of(workflow_id, name)
        if isinstance(self.storage, LocalStorage):
            path = self.resolve(workflow_id, name)
            handle = path.open("rb")
            return handle, path.stat().st_size
        found = self.storage.stat(key)
        if found is None:
            raise ArtifactNotFound(workflow_id, name)
        try:
            return self.storage.open_read(key), found.size_bytes
        except StorageKeyMissing:
            raise ArtifactNotFound(workflow_id, name) from None

    def read_bytes(self, workflow_id: str, name: str, max_bytes: int | None = None) -> bytes:
        """An artifact's bytes; ValueError when it is larger than max_bytes."""
        handle, size = self.open(workflow_id, name)
        with handle:
            if max_bytes is not None and size > max_bytes:
                raise ValueError(f"{name} has {size} bytes; at most {max_bytes} are read")
            return handle.read()

    def copy_to(self, workflow_id: str, name: str, target: Path) -> Path:
        """Copy an artifact into a local file (for the sandbox, which mounts files)."""
        handle, _ = self.open(workflow_id, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with handle, target.open("wb") as out:
            while chunk := handle.read(1024 * 1024):
                out.write(chunk)
        return target

    def presigned_url(
        self, workflow_id: str, name: str, *, expires_seconds: int = 300
    ) -> str | None:
        """A short-lived direct download URL where the storage has them (object storage)."""
        key = self._key_of(workflow_id, name)
        if self.storage.stat(key) is None:
            raise ArtifactNotFound(workflow_id, name)
        return self.storage.presigned_url(
            key,
            expires_seconds=expires_seconds,
            filename=PurePosixPath(name).name,
            content_type=content_type_for(name),
        )

    def list(
        self, workflow_id: str, step: str | None = None, version: int | None = None
    ) -> _ArtifactRefs:
        """Every artifact of a run (or of one step / version), sorted by name."""
        if not is_valid_workflow_id(workflow_id):
            return []
        base = self.run_key(workflow_id)
        if step is not None:
            base = join_key(base, str(step))
            if version is not None:
                base = self.version_key(workflow_id, step, version)
        return [
            self._ref(workflow_id, item.key, item.size_bytes) for item in self.storage.list(base)
        ]

    # --- Internals --------------------------------------------------------------------------

    def _key_of(self, workflow_id: str, name: str) -> str:
        if not is_valid_workflow_id(workflow_id):
            raise ArtifactNotFound(workflow_id, name)
        parts = _visible_parts(name)
        if parts is None:
            raise ArtifactNotFound(workflow_id, name)
        return join_key(self.run_key(workflow_id), *parts)

    def _ref(self, workflow_id: str, key: str, size: int) -> ArtifactRef:
        name = key[len(self.run_key(workflow_id)) + 1 :]
        return ArtifactRef(name=name, size_bytes=size, content_type=content_type_for(name))


def _checked_name(name: str) -> str:
    if _visible_parts(name) is None:
        raise ValueError(f"invalid artifact name {name!r}")
    return name
