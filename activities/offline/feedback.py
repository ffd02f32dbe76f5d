"""Turning a reviewer's words and the critic's findings into concrete changes to the code."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from activities.offline.names import first_mention, mentions, quoted, strip_mentions
from workflows.models import DatasetProfile, Feedback

# One alternation so that "don't drop" is read as a request to keep, not to drop.
_VERBS = re.compile(
    r"(?P<keep>\b(?:don'?t|do not|never|please don'?t) (?:drop|remove|exclude|ignore|delete)\b"
    r"|\bkeep\b|\binclude\b|\brestore\b|\bretain\b|\bput back\b|\badd back\b)"
    r"|(?P<drop>\bdrop(?:ping|ped)?\b|\bremov(?:e|ing)\b|\bexclud(?:e|ing)\b|\bignor(?:e|ing)\b"
    r"|\bdelet(?:e|ing)\b|\bdiscard\b|\bomit\b|\bskip\b|\bget rid of\b|\bleave out\b"
    r"|\b(?:don'?t|do not) use\b|\bwithout\b|\bno need for\b)"
)
# A dot ends a sentence only before a space, so "No. of items" or "x.1" stay whole names.
_SENTENCE_END = re.compile(r"[;!?\n]+|\.(?:\s+|$)")
# Words that end the list of columns a verb applies to ("drop X *but* show Y", "drop X *as* ...").
_SCOPE_END = re.compile(
    r"\b(?:but|then|also|show|plot|check|compute|print|add|look|instead|because|since|so|as"
    r"|and (?:please|show|plot|check|compute|print|add|look))\b"
)
# How a critic reports a run that broke, as opposed to a model that is merely weak.
_RUN_FAILED = re.compile(
    r"exit code|traceback|timed? ?out|memoryerror|out of memory|run failed|crash|did not run"
)
_ID_WORDS = re.compile(r"\b(?:ids?|identifiers?|id columns?|index column)\b")
_TARGET_REQUEST = re.compile(
    r"(?:target|label)(?: column)?\s+(?:is|should be|=|:)\s+(?P<a>.+)"
    r"|\buse\s+(?P<b>.+?)\s+as\s+(?:the\s+)?(?:target|label)"
    r"|\bpredict\s+(?P<c>.+?)\s+instead\b"
)


@dataclass
class HumanRequests:
    """What the person asked for, resolved against the dataset's real column names."""

    drop: list[str] = field(default_factory=list)
    target: str | None = None
    unmatched: list[str] = field(default_factory=list)  # requests naming no known column
    refused: list[str] = field(default_factory=list)  # drops not done (the target itself)


@dataclass
class CriticRequests:
    """What the critic's findings ask the next training code to change."""

    handle_imbalance: bool = False
    leakage_columns: list[str] = field(default_factory=list)
    beat_baseline: bool = False
    run_failed: bool = False
    reproducibility: bool = False
    overfitting: bool = False
    addressed: list[str] = field(default_factory=list)  # a human-readable line per change

    @property
    def has_changes(self) -> bool:
        return bool(self.addressed)


def _columns_named(scope: str, columns: Sequence[str], id_columns: Sequence[str]) -> list[str]:
    """The real columns a fragment of a sentence refers to, longest names first."""
    found: list[str] = []
    remaining = scope
    for name in sorted(columns, key=len, reverse=True):
        if mentions(remaining, name):
            found.append(name)
            # Blank out the match so "mean radius" does not also count as "radius".
            remaining = strip_mentions(remaining, name)
    if _ID_WORDS.search(remaining):
        found.extend(c for c in id_columns if c not in found)
    return found


def _target_request(sentence: str, columns: Sequence[str]) -> str | None:
    match = _TARGET_REQUEST.search(sentence)
    if not match:
        return None
    phrase = next(g for g in match.groups() if g)
    # "the target is churn, drop tenure": the column named first is the target.
    positions = {c: first_mention(phrase, c) for c in _columns_named(phrase, columns, [])}
    found = {c: p for c, p in positions.items() if p is not None}
    return min(found, key=lambda c: found[c]) if found else None


def parse_human_feedback(feedback: Iterable[Feedback], profile: DatasetProfile) -> HumanRequests:
    """Columns the person wants dropped (or kept again) and a target they name, in order given."""
    columns = [c.name for c in profile.columns]
    requests = HumanRequests()
    dropped: set[str] = set()
    for item in feedback:
        if item.source != "human":
            continue
        for sentence in _SENTENCE_END.split(item.text.lower()):
            target = _target_request(sentence, columns)
            if target is not None:
                requests.target = target
            verbs = list(_VERBS.finditer(sentence))
            for i, verb in enumerate(verbs):
                end = verbs[i + 1].start() if i + 1 < len(verbs) else len(sentence)
                scope = sentence[verb.end() : end]
                if stop := _SCOPE_END.search(scope):
                    scope = scope[: stop.start()]
                named = _columns_named(scope, columns, profile.id_columns)
                if verb.group("keep"):
                    for name in named:
                        dropped.discard(name)
                    continue
                if not named:
                    requests.unmatched.append(f"{verb.group(0)}{scope}".strip())
                for name in named:
                    dropped.add(name)
    requests.drop = [c for c in columns if c in dropped]  # in the dataset's order
    return requests


def _finding_lines(text: str) -> list[str]:
    """The findings of one review as the workflow records it ("[error] leakage: ...").

    The first line is "<verdict>: <summary>"; a summary restates results ("vs the baseline")
    rather than asking for changes, so only the findings are read when there are any.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    findings = [line for line in lines if re.match(r"\[(error|warning)\]", line, re.I)]
    if findings:
        return findings
    if any(re.match(r"\[info\]", line, re.I) for line in lines):
        return []
    if lines and lines[0].lower().startswith("accept"):
        return []
    return lines


def parse_critic_feedback(
    feedback: Iterable[Feedback], columns: Collection[str], target: str
) -> CriticRequests:
    """Which known problems the critic raised, across all of its reviews so far."""
    requests = CriticRequests()
    for item in feedback:
        if item.source != "critic":
            continue
        for line in _finding_lines(item.text):
            lowered = line.lower()
            if "imbalanc" in lowered or "class_weight" in lowered or "minority" in lowered:
                requests.handle_imbalance = True
            if "leak" in lowered:
                for name in quoted(line):
                    if name in columns and name != target:
                        requests.leakage_columns.append(name)
            if "baseline" in lowered:
                requests.beat_baseline = True
            if _RUN_FAILED.search(lowered):
                requests.run_failed = True
            if "random_state" in lowered or "seed" in lowered or "reproducib" in lowered:
                requests.reproducibility = True
            if "overfit" in lowered:
                requests.overfitting = True
    requests.leakage_columns = list(dict.fromkeys(requests.leakage_columns))
    if requests.handle_imbalance:
        requests.addressed.append("class imbalance: class_weight='balanced' on every model")
    if requests.leakage_columns:
        requests.addressed.append(
            "possible leakage: removed " + ", ".join(repr(c) for c in requests.leakage_columns)
        )
    if requests.beat_baseline:
        requests.addressed.append("weak model: more candidate models compared by CV")
    if requests.run_failed:
        requests.addressed.append("failed run: fewer rows and lighter models")
    if requests.reproducibility:
        requests.addressed.append("reproducibility: one fixed seed for the split, CV and models")
    if requests.overfitting:
        requests.addressed.append("overfitting: stronger regularisation of the tree models")
    return requests
