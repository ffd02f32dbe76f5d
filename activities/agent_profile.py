"""The dataset profile as agents see it: bounded in size however many rows or columns.

Every agent call, and the run's history, carries the profile. Its size never depends on the
row count (it holds statistics, not rows); here it is bounded in the column count too: at most
AGENT_PROFILE_COLUMNS columns are described one by one (the target and the identifiers first,
then the others in file order), the rest are summed up in `other_columns`, and sample values
are clipped. The whole profile stays in the run's artifacts (dataset/v1/profile.json).
"""

from __future__ import annotations

from collections import Counter

from workflows.models import ColumnProfile, DatasetProfile, OtherColumns

MAX_SAMPLE_VALUES = 3
MAX_SAMPLE_CHARS = 40
# A column whose name is longer than this is summed up, never described, unless it is the
# target: an agent cannot use a name it would have to copy out of a paragraph anyway.
MAX_DESCRIBED_NAME_CHARS = 120
MAX_LISTED_NAMES = 20
MAX_LISTED_NAME_CHARS = 40


def profile_for_agents(profile: DatasetProfile, max_columns: int) -> DatasetProfile:
    """A copy of `profile` describing at most `max_columns` columns, with clipped samples."""
    chosen = _described(profile, max_columns)
    described = [_clipped(c) for c in profile.columns if c.name in chosen]
    others = [c for c in profile.columns if c.name not in chosen]
    return profile.model_copy(
        update={
            "columns": described,
            "id_columns": [name for name in profile.id_columns if name in chosen],
            "other_columns": _summary(others) if others else None,
        }
    )


def _described(profile: DatasetProfile, max_columns: int) -> set[str]:
    """The names described one by one: the target, the identifiers, then file order."""
    short = [c.name for c in profile.columns if len(c.name) <= MAX_DESCRIBED_NAME_CHARS]
    ranked = [profile.target] if profile.target else []
    ranked += [name for name in profile.id_columns if len(name) <= MAX_DESCRIBED_NAME_CHARS]
    ranked += short
    chosen: list[str] = []
    for name in ranked:
        if name is not None and name not in chosen:
            chosen.append(name)
        if len(chosen) == max_columns:
            break
    return set(chosen)


def _clipped(column: ColumnProfile) -> ColumnProfile:
    samples = [_clip(v, MAX_SAMPLE_CHARS) for v in column.sample_values[:MAX_SAMPLE_VALUES]]
    return column.model_copy(update={"sample_values": samples})


def _summary(columns: list[ColumnProfile]) -> OtherColumns:
    kinds = Counter(c.kind for c in columns)
    return OtherColumns(
        count=len(columns),
        kinds=dict(sorted(kinds.items())),
        with_missing=sum(1 for c in columns if c.missing),
        names=[_clip(c.name, MAX_LISTED_NAME_CHARS) for c in columns[:MAX_LISTED_NAMES]],
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
