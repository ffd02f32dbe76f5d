"""The Data Engineering agent: an EDA script for this dataset that honours reviewers' requests.

The script is templates/eda.py (a real module) with this dataset's columns filled in.
"""

from __future__ import annotations

from activities import script_rules
from activities.offline.feedback import human_request_outcomes, latest, not_done_text
from activities.offline.selection import (
    ColumnPlan,
    is_numeric_feature,
    plan_columns,
    stored_as_text,
)
from activities.offline.snippets import (
    check_size,
    constants_block,
    csv_dialect,
    docstring,
    literal,
)
from activities.offline.templates import template_source
from workflows.models import AgentContext, DatasetProfile, GeneratedCode, RequestOutcome


def _eda_columns(
    profile: DatasetProfile, cols: ColumnPlan
) -> tuple[list[str], list[str], list[str]]:
    """Numeric, categorical and other (text/date) columns to describe, ids and target aside."""
    skip = set(cols.human.drop) | set(profile.id_columns) | {cols.target}
    numeric, categorical, other = [], [], []
    for column in profile.columns:
        if column.name in skip:
            continue
        if is_numeric_feature(column):
            numeric.append(column.name)
        elif column.kind in ("categorical", "boolean"):
            categorical.append(column.name)
        else:
            other.append(column.name)
    return numeric, categorical, other


def write_eda_code(ctx: AgentContext) -> GeneratedCode:
    """EDA code for the run's dataset, dropping the columns a reviewer asked to drop."""
    profile = ctx.dataset.profile
    cols = plan_columns(profile, ctx.plan, ctx.feedback, ctx.user_goal)
    numeric, categorical, other = _eda_columns(profile, cols)
    # The target too: a numeric target stored as text must be parsed to be described.
    text_numeric = [
        c.name for c in profile.columns if stored_as_text(c) and c.name not in cols.human.drop
    ]
    not_features = {c: r for c, r in cols.excluded.items() if c not in cols.human.drop}

    header = docstring(
        [
            f"Exploratory data analysis for: {ctx.user_goal.strip() or 'the uploaded dataset'}",
            f"Written by the offline data-engineering agent (version {ctx.version}) from a "
            f"profile of {profile.rows:,} rows x {len(profile.columns)} columns. Reads "
            "DATASET_PATH, prints a report and writes OUTPUT_DIR/eda_summary.json and PNG plots: "
            "missing_values, target_balance, distributions and correlation_heatmap.",
        ]
    )
    constants = constants_block(
        [
            literal("TARGET", cols.target),
            literal("TASK_TYPE", cols.task_type),
            literal(
                "SAMPLE_ROWS",
                profile.training_sample_rows,
                "Rows read from a larger file (a random sample, stratified by class); None: all.",
            ),
            *csv_dialect(profile),
            literal("DROP_COLUMNS", cols.human.drop, "Columns removed at the reviewer's request."),
            literal(
                "ID_COLUMNS",
                [c for c in profile.id_columns if c not in cols.human.drop],
                "Identifier columns: described, never used as features.",
            ),
            literal("NUMERIC_COLUMNS", numeric, "Summarised and correlated with the target."),
            literal(
                "CATEGORICAL_COLUMNS",
                categorical,
                "Most frequent values, and association with the target.",
            ),
            literal("OTHER_COLUMNS", other, "Free text and dates: only counted."),
            literal("TEXT_NUMERIC_COLUMNS", text_numeric, "Numbers stored as text in the file."),
            literal("NOT_FEATURES", not_features, "Columns the model will leave out, and why."),
        ]
    )
    code = "\n".join(
        [
            header,
            template_source("dataset_reader"),
            template_source("json_values"),
            template_source("plots"),
            template_source("eda", plan=constants),
        ]
    )

    summary = (
        f"EDA of {profile.rows:,} rows for target {cols.target!r} ({cols.task_type}): shape, "
        "types, missing values, "
        + ("class balance" if cols.task_type == "classification" else "target distribution")
        + ", per-feature summaries and association with the target."
    )
    if cols.human.drop:
        summary += " Dropped at your request: " + ", ".join(cols.human.drop) + "."
    if cols.human.refused:
        summary += f" Kept the target {cols.human.refused[0]!r}: it cannot be dropped."
    if cols.human.unmatched:
        summary += (
            " Could not match to a column: "
            + "; ".join(repr(u) for u in cols.human.unmatched)
            + "."
        )
    script_rules.enforce(code, "eda")
    addressed = _addressed(ctx, cols, numeric, categorical)
    summary += not_done_text(addressed)
    return GeneratedCode(
        code=check_size(code), summary=summary, version=ctx.version, addressed=addressed
    )


def _addressed(
    ctx: AgentContext, cols: ColumnPlan, numeric: list[str], categorical: list[str]
) -> list[RequestOutcome]:
    """What became of each ask in the reviewer's latest message (none on the first version)."""
    item = latest(ctx.feedback, "human")
    if item is None:
        return []
    heatmap_columns = len(numeric) + (1 if cols.task_type == "regression" else 0)
    drawable = {
        "correlation heatmap": ""
        if heatmap_columns >= 2
        else "the data has fewer than two numeric columns to correlate",
        "distributions": "" if numeric or categorical else "no feature columns remain",
        "missing values": "",
        "target balance": "",
    }
    return human_request_outcomes(item, ctx.dataset.profile, cols.human, drawable)
