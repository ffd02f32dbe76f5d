"""What the run page shows, gathered from the run's state and its artifact store.

Versions of the EDA code other than the waiting one are read from the artifact store
(`data_engineering_agent/v<n>/code.py`, with `addressed.json` beside it); the feedback each
version answered is the human feedback given on the version before it (`Feedback.on_version`;
runs from before that field fall back to order: the k-th rejection produced version k + 1).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from activities.agents import ADDRESSED_FILE
from activities.artifacts import ArtifactNotFound, ArtifactStore
from api.ui.code_views import CodeDiff, Line, diff_code, highlight_lines
from workflows.models import ArtifactRef, Feedback, RequestOutcome, RunState, Step
from workflows.scoring import higher_is_better, metric_value

CODE_FILE = "code.py"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
REPORT_FILE = "report.html"
_VERSION = re.compile(r"/v(\d+)/")


@dataclass(frozen=True)
class CodeVersion:
    version: int
    artifact: str | None  # name in the artifact store, when the file is there
    feedback: Feedback | None  # the rejection this version was written to answer
    addressed: list[RequestOutcome] = field(default_factory=list)
    current: bool = False


@dataclass(frozen=True)
class MetricsView:
    metric: str
    score: float | None
    baseline: float | None
    gain: float | None
    higher_is_better: bool
    other: dict[str, float | str]


@dataclass
class RunPage:
    state: RunState
    artifacts: list[ArtifactRef]
    code_lines: list[Line] = field(default_factory=list)
    versions: list[CodeVersion] = field(default_factory=list)
    diff: CodeDiff | None = None
    diff_error: str | None = None
    images: list[ArtifactRef] = field(default_factory=list)
    report: ArtifactRef | None = None
    metrics: MetricsView | None = None


def _version_of(name: str) -> int:
    found = _VERSION.search(name)
    return int(found.group(1)) if found else 0


def build_run_page(
    state: RunState, store: ArtifactStore, artifacts: list[ArtifactRef], against: int | None
) -> RunPage:
    """Everything the template needs; `against` picks the version to diff with (default: the
    one before the waiting one)."""
    page = RunPage(state=state, artifacts=artifacts)
    eda = state.code_context.eda_code
    if eda is not None:
        page.code_lines = highlight_lines(eda.code)
        page.versions = _versions(state, artifacts, store)
        base = against if against is not None else eda.version - 1
        if base >= 1 and base != eda.version:
            old = _read_code(store, state.workflow_id, base)
            if old is None:
                page.diff_error = f"EDA code v{base} is not in the artifact store."
            else:
                page.diff = diff_code(old, eda.code, base, eda.version)
    page.images = [ref for ref in artifacts if ref.name.lower().endswith(IMAGE_SUFFIXES)]
    reports = [ref for ref in artifacts if ref.name.rsplit("/", 1)[-1] == REPORT_FILE]
    if reports:
        page.report = max(reports, key=lambda ref: (_version_of(ref.name), ref.name))
    page.metrics = _metrics(state)
    return page


def _versions(
    state: RunState, artifacts: list[ArtifactRef], store: ArtifactStore
) -> list[CodeVersion]:
    eda = state.code_context.eda_code
    assert eda is not None
    stored = {
        _version_of(ref.name): ref.name
        for ref in artifacts
        if ref.name.startswith(f"{Step.DATA_ENGINEERING.value}/v") and ref.name.endswith(CODE_FILE)
    }
    rejections = [
        item
        for item in state.review_feedback
        if item.source == "human" and item.step == Step.DATA_ENGINEERING
    ]
    by_version = {
        item.on_version: item
        for item in state.review_feedback
        if item.source == "human" and item.on_version is not None
    }
    versions = []
    for version in range(1, eda.version + 1):
        if by_version:
            answered = by_version.get(version - 1)
        else:
            answered = rejections[version - 2] if 2 <= version <= len(rejections) + 1 else None
        current = version == eda.version
        versions.append(
            CodeVersion(
                version=version,
                artifact=stored.get(version),
                feedback=answered,
                addressed=list(eda.addressed)
                if current
                else _read_addressed(store, state.workflow_id, version),
                current=current,
            )
        )
    return versions


def _read_addressed(store: ArtifactStore, workflow_id: str, version: int) -> list[RequestOutcome]:
    """What an earlier version did about each request, as its Data Engineering step kept it."""
    name = f"{Step.DATA_ENGINEERING.value}/v{version}/{ADDRESSED_FILE}"
    try:
        raw = store.read_bytes(workflow_id, name).decode("utf-8")
        return [RequestOutcome.model_validate(item) for item in json.loads(raw)]
    except (ArtifactNotFound, OSError, ValueError):
        return []  # versions written before the file existed


def _read_code(store: ArtifactStore, workflow_id: str, version: int) -> str | None:
    name = f"{Step.DATA_ENGINEERING.value}/v{version}/{CODE_FILE}"
    try:
        return store.read_bytes(workflow_id, name).decode("utf-8", errors="replace")
    except (ArtifactNotFound, OSError):
        return None


def _metrics(state: RunState) -> MetricsView | None:
    result = state.code_context.training_result
    if result is None or not result.metrics:
        return None
    metrics = result.metrics
    score, baseline = metric_value(metrics, "score"), metric_value(metrics, "baseline_score")
    higher = higher_is_better(metrics)
    gain = None
    if score is not None and baseline is not None:
        gain = score - baseline if higher else baseline - score
    shown_apart = {"score", "baseline_score", "metric", "higher_is_better"}
    other = {key: value for key, value in metrics.items() if key not in shown_apart}
    return MetricsView(str(metrics.get("metric", "score")), score, baseline, gain, higher, other)
