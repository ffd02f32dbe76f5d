"""Moved to activities/column_plan.py, which intake uses too; re-exported for the offline brain."""

from activities.column_plan import (
    GENERIC_TARGET_NAMES,
    MAX_CLASSES_FOR_INTEGER_TARGET,
    infer_task_type,
)
from activities.column_plan import choose_target as infer_target

__all__ = [
    "GENERIC_TARGET_NAMES",
    "MAX_CLASSES_FOR_INTEGER_TARGET",
    "infer_target",
    "infer_task_type",
]
