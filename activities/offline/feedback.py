"""Turning a reviewer's words into concrete changes to the code: the one place that reads prose.

People write free text, so it is parsed here. The critic hands over structured findings, read
by activities/offline/critic_requests.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from activities.offline.names import first_mention, mentions, strip_mentions
from workflows.models import DatasetProfile, Feedback, RequestOutcome

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


# --- What became of each request ----------------------------------------------------------------

# Where one request ends and the next begins inside a message ("drop X; also show Y").
_REQUEST_BREAK = re.compile(
    r"[;!?\n]+|\.(?:\s+|$)|\b(?:and then|and also|also|but|then)\b"
    r"|\band\b(?=\s+(?:please|show|plot|draw|add|compute|use)\b)",
    re.IGNORECASE,
)
# Words that make a clause a request rather than a remark ("looks good").
_ASKING = re.compile(
    r"\b(?:add|show|plot|draw|chart|graph|use|try|make|compute|create|include|change|check"
    r"|want|need|should|could|would|please|convert|encode|impute|scale|normali[sz]e|log"
    r"|transform|split|tune|report|print|display|visuali[sz]e|give|explain|investigate)\b"
)
# The plots the offline EDA draws, by the words people use for them.
EDA_PLOTS: dict[str, tuple[re.Pattern[str], str]] = {
    "correlation heatmap": (re.compile(r"heat ?map|correlat"), "correlation_heatmap.png"),
    "distributions": (re.compile(r"histogram|distribution|spread"), "distributions.png"),
    "missing values": (re.compile(r"missing|null|\bnan\b|\bblank"), "missing_values.png"),
    "target balance": (re.compile(r"balance|class counts|target"), "target_balance.png"),
}
_ANY_PLOT = re.compile(
    r"\b(?:plot|chart|graph|heat ?map|correlat|histogram|scatter|box ?plot|pair ?plot|visuali[sz]"
    r"|figure|diagram)"
)


def request_clauses(text: str) -> list[str]:
    """A message cut into its separate asks, each as the person wrote it (trimmed)."""
    parts = [p.strip(" ,.:-") for p in _REQUEST_BREAK.split(text)]
    return [p for p in parts if p]


def _plot_outcome(clause: str, drawable: dict[str, str]) -> RequestOutcome | None:
    """The outcome of a request for a plot, or None when the clause asks for no plot."""
    lowered = clause.lower()
    if not _ANY_PLOT.search(lowered):
        return None
    for label, (pattern, file_name) in EDA_PLOTS.items():
        if pattern.search(lowered):
            why_not = drawable.get(label)
            if why_not:
                return RequestOutcome(request=clause, done=False, reason=why_not)
            return RequestOutcome(request=clause, done=True, reason=f"drawn as {file_name}")
    return RequestOutcome(
        request=clause,
        done=False,
        reason="the offline agent draws only distributions, the target balance, a correlation "
        "heatmap and missing values; an LLM-backed run can draw other plots",
    )


def human_request_outcomes(
    item: Feedback,
    profile: DatasetProfile,
    requests: HumanRequests,
    drawable: dict[str, str],
) -> list[RequestOutcome]:
    """What this version did with each ask of one reviewer message.

    `drawable` maps a plot label to why it cannot be drawn for this data ("" when it can).
    """
    columns = [c.name for c in profile.columns]
    outcomes: list[RequestOutcome] = []
    for clause in request_clauses(item.text):
        lowered = clause.lower()
        if _target_request(lowered, columns) is not None:
            outcomes.append(
                RequestOutcome(request=clause, done=True, reason=f"target is {requests.target!r}")
            )
            continue
        verb = _VERBS.search(lowered)
        if verb is not None:
            named = _columns_named(lowered[verb.end() :], columns, profile.id_columns)
            refused = [n for n in named if n in requests.refused]
            if refused:
                reason = f"{refused[0]!r} is the target and cannot be dropped"
                outcomes.append(RequestOutcome(request=clause, done=False, reason=reason))
            elif named:
                done = "kept" if verb.group("keep") else "dropped"
                outcomes.append(
                    RequestOutcome(request=clause, done=True, reason=f"{done} {', '.join(named)}")
                )
            else:
                outcomes.append(
                    RequestOutcome(
                        request=clause,
                        done=False,
                        reason="no column of the dataset matches the words used",
                    )
                )
            continue
        plot = _plot_outcome(clause, drawable)
        if plot is not None:
            outcomes.append(plot)
        elif _ASKING.search(lowered):
            outcomes.append(
                RequestOutcome(
                    request=clause,
                    done=False,
                    reason="the offline data-engineering agent understands dropping or keeping "
                    "columns, changing the target and its standard plots, not this request",
                )
            )
    return outcomes


def latest(feedback: Sequence[Feedback], source: str) -> Feedback | None:
    """The newest feedback from one source: the ask this version answers."""
    return next((f for f in reversed(feedback) if f.source == source), None)


def not_done_text(outcomes: Iterable[RequestOutcome]) -> str:
    """ " Not done: X, because Y." for the summary, or nothing."""
    missed = [f"{o.request} (because {o.reason})" for o in outcomes if not o.done]
    return (" Not done: " + "; ".join(missed) + ".") if missed else ""
