"""The artifact store: a run's files, at root/<workflow_id>/<step>/v<version>/<name>."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from workflows.models import ArtifactRef

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
_TEMP_PREFIX = ".tmp-"

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


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


class ArtifactStore:
    """Files of each run, grouped by step and version; writes are atomic, reads are confined."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- Addressing -------------------------------------------------------------------------

    def run_dir(self, workflow_id: str) -> Path:
        if not is_valid_workflow_id(workflow_id):
            raise ValueError(f"invalid workflow id {workflow_id!r}")
        return self.root / workflow_id

    def version_dir(self, workflow_id: str, step: str, version: int) -> Path:
        if _visible_parts(str(step)) is None or "/" in str(step):
            raise ValueError(f"invalid step name {step!r}")
        if version < 0:
            raise ValueError(f"invalid version {version}")
        return self.run_dir(workflow_id) / str(step) / f"v{version}"

    # --- Writing ----------------------------------------------------------------------------

    def write_bytes(
        self, workflow_id: str, step: str, version: int, name: str, data: bytes
    ) -> ArtifactRef:
        """Write one file atomically: a retried step replaces it, a reader never sees half."""
        return self._place(workflow_id, step, version, name, lambda temp: _fsync_write(temp, data))

    def write_text(
        self, workflow_id: str, step: str, version: int, name: str, text: str
    ) -> ArtifactRef:
        return self.write_bytes(workflow_id, step, version, name, text.encode("utf-8"))

    def import_dir(self, workflow_id: str, step: str, version: int, source: Path) -> _ArtifactRefs:
        """Copy a folder's regular files into a version, each atomically, keeping subfolders.

        Symlinks are skipped rather than followed: a link made by generated code could point at
        any file the worker can read, which would then be served as an artifact.
        """
        refs: _ArtifactRefs = []
        for relative in iter_regular_files(source):
            refs.append(self._copy_in(workflow_id, step, version, relative, source / relative))
        return refs

    @contextmanager
    def replace_version(self, workflow_id: str, step: str, version: int) -> Iterator[Path]:
        """Yield an empty staging folder that becomes the whole version when the block succeeds.

        A re-run of a step therefore leaves exactly its own files (none from an earlier attempt)
        and an exception leaves the previous contents untouched. The swap is two renames, so a
        reader may briefly find the version missing but never half-written.
        """
        target = self.version_dir(workflow_id, step, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{target.name}-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would otherwise become the version's mode
        try:
            yield staging
            retired = target.parent / f"{_TEMP_PREFIX}old-{uuid.uuid4().hex}"
            if target.exists():
                os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # --- Reading ----------------------------------------------------------------------------

    def resolve(self, workflow_id: str, name: str) -> Path:
        """The real path of an artifact, or ArtifactNotFound for unknown or escaping names."""
        if not is_valid_workflow_id(workflow_id):
            raise ArtifactNotFound(workflow_id, name)
        parts = _visible_parts(name)
        if parts is None:
            raise ArtifactNotFound(workflow_id, name)
        run_dir = self.run_dir(workflow_id)
        try:
            real_run_dir = run_dir.resolve(strict=True)
            # resolve() follows every symlink on the way, so the containment check below sees
            # where the file really is, not where its name says it is.
            real = run_dir.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError):
            raise ArtifactNotFound(workflow_id, name) from None
        if not real.is_relative_to(real_run_dir) or not real.is_file():
            raise ArtifactNotFound(workflow_id, name)
        return real

    def list(
        self, workflow_id: str, step: str | None = None, version: int | None = None
    ) -> _ArtifactRefs:
        """Every artifact of a run (or of one step / version), sorted by name."""
        if not is_valid_workflow_id(workflow_id):
            return []
        base = self.run_dir(workflow_id)
        if step is not None:
            base = base / str(step)
            if version is not None:
                base = self.version_dir(workflow_id, step, version)
        return [self._ref(workflow_id, base / relative) for relative in iter_regular_files(base)]

    # --- Internals --------------------------------------------------------------------------

    def _copy_in(
        self, workflow_id: str, step: str, version: int, name: str, source: Path
    ) -> ArtifactRef:
        return self._place(
            workflow_id,
            step,
            version,
            name,
            lambda temp: shutil.copyfile(source, temp, follow_symlinks=False),
        )

    def _place(
        self, workflow_id: str, step: str, version: int, name: str, fill: Callable[[Path], object]
    ) -> ArtifactRef:
        """Fill a temporary file beside the artifact, then rename it into place."""
        parts = _visible_parts(name)
        if parts is None:
            raise ValueError(f"invalid artifact name {name!r}")
        target = self.version_dir(workflow_id, step, version).joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fill(temp)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return self._ref(workflow_id, target)

    def _ref(self, workflow_id: str, path: Path) -> ArtifactRef:
        name = path.relative_to(self.run_dir(workflow_id)).as_posix()
        return ArtifactRef(
            name=name, size_bytes=path.stat().st_size, content_type=content_type_for(name)
        )


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
