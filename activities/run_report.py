"""The run's report: one self-contained HTML page per training round, written after the critic.

Goal, data, plan, training code, metrics against the baseline, the plots (embedded as base64
data URIs) and the critic's review. Built by the worker from the run's state and stored files,
whichever brain wrote the code; every text is escaped, and only real PNG files are embedded.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

from activities.artifacts import ArtifactNotFound, ArtifactStore
from workflows.models import AgentContext, ArtifactRef, ExecutionResult, Review, Step
from workflows.scoring import higher_is_better

REPORT_FILE = "report.html"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_BYTES = 3 * 1024 * 1024
MAX_IMAGES = 24
MAX_CODE_CHARS = 60_000
# Shown first, in pairs: the model's number and the baseline it has to beat.
_COMPARISONS = (
    ("score", "baseline_score"),
    ("accuracy", "majority_baseline_accuracy"),
    ("rmse", "baseline_rmse"),
    ("cv_mean", "baseline_cv_mean"),
)

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .3em .6em; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: .85em; }
figure { display: inline-block; margin: .5em; } img { max-width: 520px; }
.error { color: #b00020; } .warning { color: #a05a00; } .info { color: #555; }
.below { color: #b00020; font-weight: bold; }
"""


def render_report(ctx: AgentContext, review: Review, images: dict[str, bytes]) -> str:
    """The report as HTML text; `images` maps an artifact name to its PNG bytes."""
    e = html.escape
    result = ctx.training_result
    metrics = (result.metrics if result else None) or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Run report {e(ctx.workflow_id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Run {e(ctx.workflow_id)}: training v{ctx.version}</h1>",
        f"<h2>Goal</h2><p>{e(ctx.user_goal)}</p>",
        _data_section(ctx),
        _plan_section(ctx),
        _metrics_section(metrics, result),
        _images_section(images),
        _review_section(review),
        _requests_section(ctx),
        "<h2>Training code</h2>",
        f"<pre>{e((ctx.training_code.code if ctx.training_code else '')[:MAX_CODE_CHARS])}</pre>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def write_run_report(store: ArtifactStore, ctx: AgentContext, review: Review) -> ArtifactRef:
    """Render the round's report with its plots and store it under critic_agent/v<n>/."""
    images = _png_files(store, ctx.workflow_id, _results(ctx))
    page = render_report(ctx, review, images)
    return store.write_text(ctx.workflow_id, Step.CRITIC.value, ctx.version, REPORT_FILE, page)


def _results(ctx: AgentContext) -> list[ExecutionResult]:
    return [r for r in (ctx.eda_result, ctx.training_result) if r is not None]


def _png_files(
    store: ArtifactStore, workflow_id: str, results: Iterable[ExecutionResult]
) -> dict[str, bytes]:
    images: dict[str, bytes] = {}
    for result in results:
        for ref in result.artifacts:
            if len(images) >= MAX_IMAGES or not ref.name.lower().endswith(".png"):
                continue
            if ref.size_bytes > MAX_IMAGE_BYTES:
                continue
            try:  # from storage: the worker writing the report may not be the one that plotted
                data = store.read_bytes(workflow_id, ref.name, max_bytes=MAX_IMAGE_BYTES)
            except (ArtifactNotFound, OSError, ValueError):
                continue
            if data.startswith(PNG_MAGIC):  # only real PNGs become data URIs
                images[ref.name] = data
    return images


def _data_section(ctx: AgentContext) -> str:
    e = html.escape
    info = ctx.dataset
    profile = info.profile
    return (
        "<h2>Data</h2><table>"
        f"<tr><th>source</th><td>{e(info.source_url)}</td></tr>"
        f"<tr><th>rows x columns</th><td>{profile.rows:,} x {len(profile.columns)}</td></tr>"
        f"<tr><th>sha256</th><td><code>{e(info.sha256)}</code></td></tr>"
        f"<tr><th>target</th><td>{e(str(ctx.plan.target if ctx.plan else profile.target))}"
        "</td></tr></table>"
    )


def _plan_section(ctx: AgentContext) -> str:
    if ctx.plan is None:
        return ""
    e = html.escape
    steps = "".join(f"<li>{e(step)}</li>" for step in ctx.plan.steps)
    return f"<h2>Plan</h2><p>{e(ctx.plan.rationale)}</p><ol>{steps}</ol>"


def _metrics_section(metrics: dict[str, float | str], result: ExecutionResult | None) -> str:
    e = html.escape
    if result is None:
        return "<h2>Metrics</h2><p>The training has not run.</p>"
    if not metrics:
        return f"<h2>Metrics</h2><p>The run reported no metrics (exit code {result.exit_code}).</p>"
    rows = ["<tr><th>measure</th><th>model</th><th>baseline</th></tr>"]
    shown = set()
    for model_key, baseline_key in _COMPARISONS:
        if model_key in metrics and baseline_key in metrics:
            label = str(metrics.get("metric", "score")) if model_key == "score" else model_key
            below = _is_below(metrics, model_key, baseline_key)
            css = " class='below'" if below else ""
            note = " (below the baseline)" if below else ""
            rows.append(
                f"<tr{css}><td>{e(label)}{note}</td><td>{e(_fmt(metrics[model_key]))}</td>"
                f"<td>{e(_fmt(metrics[baseline_key]))}</td></tr>"
            )
            shown |= {model_key, baseline_key}
    others = "".join(
        f"<tr><td>{e(k)}</td><td colspan='2'>{e(_fmt(v))}</td></tr>"
        for k, v in metrics.items()
        if k not in shown
    )
    return f"<h2>Metrics against the baseline</h2><table>{''.join(rows)}{others}</table>"


def _is_below(metrics: dict[str, float | str], model_key: str, baseline_key: str) -> bool:
    try:
        model, baseline = float(metrics[model_key]), float(metrics[baseline_key])
    except (TypeError, ValueError):
        return False
    lower_is_better = model_key == "rmse" or (
        model_key in ("score", "cv_mean") and not higher_is_better(metrics)
    )
    return model > baseline if lower_is_better else model < baseline


def _fmt(value: float | str) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _images_section(images: dict[str, bytes]) -> str:
    if not images:
        return "<h2>Plots</h2><p>No plots were written.</p>"
    e = html.escape
    figures = "".join(
        f"<figure><img alt='{e(name)}' src='data:image/png;base64,"
        f"{base64.b64encode(data).decode('ascii')}'><figcaption>{e(name)}</figcaption></figure>"
        for name, data in images.items()
    )
    return f"<h2>Plots</h2>{figures}"


def _review_section(review: Review) -> str:
    e = html.escape
    findings = "".join(
        f"<li class='{e(f.severity)}'>[{e(f.severity)}] {e(f.category)}: {e(f.message)}</li>"
        for f in review.findings
    )
    return (
        f"<h2>Critic's review: {e(review.verdict)}</h2><p>{e(review.summary)}</p>"
        f"<ul>{findings}</ul>"
    )


def _requests_section(ctx: AgentContext) -> str:
    e = html.escape
    outcomes = [
        o for code in (ctx.eda_code, ctx.training_code) if code is not None for o in code.addressed
    ]
    if not outcomes:
        return ""
    items = "".join(
        f"<li>{'done' if o.done else 'NOT done'}: {e(o.request)}"
        + (f" ({e(o.reason)})" if o.reason else "")
        + "</li>"
        for o in outcomes
    )
    return f"<h2>Requests</h2><ul>{items}</ul>"
