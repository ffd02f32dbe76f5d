"""Splitting column names and free text into comparable words: for intake and both brains."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import snowballstemmer

# Splits "MedHouseVal", "customerID", "mean radius" and "is_churn" into their words.
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_TEXT_WORD = re.compile(r"[a-z0-9]+")


def stem(word: str) -> str:
    """A deliberately crude singular form, so "prices" meets "price" and "classes" meets "class"."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "xes", "ches", "shes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


_SNOWBALL = snowballstemmer.stemmer("english")
_SNOWBALL_LOCK = threading.Lock()  # the stemmer keeps its word in itself; activities use threads


@lru_cache(maxsize=8192)
def root(word: str) -> str:
    """The Snowball (Porter 2) root of a word: "leaving" and "leave" -> "leav", "earns" -> "earn".

    Finer than `stem`, for reading goals: verbs and adjectives meet their nouns.
    """
    with _SNOWBALL_LOCK:
        return str(_SNOWBALL.stemWord(word.lower()))


def name_roots(name: str) -> list[str]:
    """The roots of a column name's words: "is_canceled" -> ["is", "cancel"]."""
    return [root(w) for w in _WORD.findall(name)]


def text_roots(text: str) -> list[str]:
    """The roots of free text's words, in order."""
    return [root(w) for w in _TEXT_WORD.findall(text.lower())]


def text_tokens(text: str) -> list[str]:
    """Free text's words as written, lower case, in order."""
    return _TEXT_WORD.findall(text.lower())


def name_words(name: str) -> list[str]:
    """The stemmed words of a column name, camelCase and separators both splitting."""
    return [stem(w) for w in _WORD.findall(name)]


def text_words(text: str) -> list[str]:
    """The stemmed words of free text such as a user's goal."""
    return [stem(w) for w in _TEXT_WORD.findall(text.lower())]


def normalize(name: str) -> str:
    """Lower case without separators: "Median_House Value" -> "medianhousevalue"."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def spoken_forms(name: str) -> set[str]:
    """How a person may write a column name in a sentence, all lower case."""
    lowered = name.lower()
    forms = {lowered, lowered.replace("_", " "), lowered.replace(" ", "_")}
    words = [w.lower() for w in _WORD.findall(name)]
    if words:
        forms.add(" ".join(words))
        forms.add("_".join(words))
    return {f.strip() for f in forms if f.strip()}


def _mention_pattern(name: str) -> re.Pattern[str]:
    forms = sorted(spoken_forms(name), key=len, reverse=True)
    alternatives = "|".join(re.escape(f) for f in forms)
    return re.compile(rf"(?<![a-z0-9_])(?:{alternatives})(?![a-z0-9_])")


def mentions(text: str, name: str) -> bool:
    """Whether lower-cased `text` names the column `name` as a whole word, in any spoken form."""
    return _mention_pattern(name).search(text) is not None


def first_mention(text: str, name: str) -> int | None:
    """Where lower-cased `text` first names the column, or None."""
    match = _mention_pattern(name).search(text)
    return match.start() if match else None


def strip_mentions(text: str, name: str) -> str:
    """`text` with every whole-word mention of the column blanked out."""
    return _mention_pattern(name).sub(" ", text)


def quoted(text: str) -> list[str]:
    """Strings quoted in a message: how the critic names columns."""
    return [a or b for a, b in re.findall(r"'([^'\n]+)'|\"([^\"\n]+)\"", text)]
