"""Moved to activities/column_names.py (intake uses it too); kept for the offline modules' imports."""

from activities.column_names import (
    first_mention,
    mentions,
    name_words,
    normalize,
    quoted,
    spoken_forms,
    stem,
    strip_mentions,
    text_words,
)

__all__ = [
    "first_mention",
    "mentions",
    "name_words",
    "normalize",
    "quoted",
    "spoken_forms",
    "stem",
    "strip_mentions",
    "text_words",
]
