"""What the critic's structured findings ask the next training script to change, and what it did.

The critic hands over `Finding`s with an action and the columns concerned; this module reads
those fields, never the prose. Histories from before findings travelled as data carry only the
rendered text ("[error] leakage: ..."); `findings_from_text` turns those lines back into
findings once, here, so nothing else reads critic prose.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from activities.offline.names import quoted
from workflows.models import Feedback, Finding, FindingAction, RequestOutcome

# The action a category implied before findings carried one (older histories only).
LEGACY_ACTIONS: dict[str, FindingAction] = {
    "imbalance": "balance_classes",
    "leakage": "investigate_leakage",
    "baseline": "tune",
    "execution": "fix_run",
    "reproducibility": "fix_evaluation",
    "evaluation": "fix_evaluation",
    "overfitting": "regularise",
    "goal": "change_target",
    "metric": "use_metric",
    "accuracy": "use_metric",
    "feedback": "do_request",
}
# How the workflow renders one finding into the feedback text (workflows/data_science_run.py).
_RENDERED_FINDING = re.compile(r"^\[(error|warning)\]\s*([\w-]+):\s*(.*)$", re.IGNORECASE)


@dataclass
class CriticRequests:
    """What the critic's findings ask the next training code to change."""

    handle_imbalance: bool = False
    leakage_columns: list[str] = field(default_factory=list)
    target: str | None = None  # the column the goal names, when the run predicted another
    beat_baseline: bool = False
    run_failed: bool = False
    reproducibility: bool = False
    overfitting: bool = False
    guard_accuracy: bool = False  # decide by accuracy: the last run fell below the majority
    addressed: list[str] = field(default_factory=list)  # a human-readable line per change

    @property
    def has_changes(self) -> bool:
        return bool(self.addressed)


def render_finding(finding: Finding) -> str:
    """One finding as people read it, and as the workflow writes it into the feedback text."""
    return f"[{finding.severity}] {finding.category}: {finding.message}"


def findings_from_text(text: str) -> list[Finding]:
    """The error and warning findings of a review recorded as text only (older histories)."""
    findings = []
    for line in text.splitlines():
        match = _RENDERED_FINDING.match(line.strip())
        if match is None:
            continue
        severity, category, message = match.group(1).lower(), match.group(2).lower(), match[3]
        findings.append(
            Finding(
                severity="error" if severity == "error" else "warning",
                category=category,
                message=message,
                columns=quoted(message),
                action=LEGACY_ACTIONS.get(category),
            )
        )
    return findings


def critic_findings(item: Feedback) -> list[Finding]:
    """The findings of one critic review that ask for something: errors, and warnings that
    name an action (a warning without one is a remark, "worth a look")."""
    findings = item.findings if item.findings else findings_from_text(item.text)
    return [f for f in findings if f.severity == "error" or f.action is not None]


def parse_critic_findings(
    feedback: Iterable[Feedback], columns: Collection[str], target: str
) -> CriticRequests:
    """Which changes the critic asked for, across all of its reviews so far."""
    requests = CriticRequests()
    for item in feedback:
        if item.source != "critic":
            continue
        for finding in critic_findings(item):
            action = finding.action
            named = [c for c in finding.columns if c in columns]
            if action == "balance_classes":
                requests.handle_imbalance = True
            elif action in ("investigate_leakage", "drop_columns"):
                requests.leakage_columns += [c for c in named if c != target]
            elif action == "change_target" and named:
                requests.target = named[0]
            elif action == "tune":
                requests.beat_baseline = True
            elif action == "fix_run":
                requests.run_failed = True
            elif action == "fix_evaluation":
                requests.reproducibility = True
            elif action == "regularise":
                requests.overfitting = True
            elif action == "use_metric":
                requests.guard_accuracy = True
    requests.leakage_columns = list(dict.fromkeys(requests.leakage_columns))
    if requests.target is not None:
        requests.addressed.append(f"target: predicts {requests.target!r}, as the goal asks")
    if requests.handle_imbalance:
        requests.addressed.append("class imbalance: class_weight='balanced' on every model")
    if requests.leakage_columns:
        requests.addressed.append(
            "possible leakage: removed " + ", ".join(repr(c) for c in requests.leakage_columns)
        )
    if requests.beat_baseline:
        requests.addressed.append("weak model: more candidate models and a longer tuning budget")
    if requests.run_failed:
        requests.addressed.append("failed run: fewer rows and lighter models")
    if requests.reproducibility:
        requests.addressed.append("evaluation: a held-out split and one fixed seed everywhere")
    if requests.overfitting:
        requests.addressed.append("overfitting: stronger regularisation of the tree models")
    if requests.guard_accuracy:
        requests.addressed.append(
            "metric: ROC AUC or macro F1 to score, the decision threshold tuned for accuracy"
        )
    return requests


# Which of the changes above answers each action (by the prefix of its `addressed` line).
_CHANGES: dict[FindingAction, str] = {
    "balance_classes": "class imbalance",
    "investigate_leakage": "possible leakage",
    "drop_columns": "possible leakage",
    "change_target": "target",
    "tune": "weak model",
    "fix_run": "failed run",
    "fix_evaluation": "evaluation",
    "regularise": "overfitting",
    "use_metric": "metric",
}


def critic_request_outcomes(
    item: Feedback, requests: CriticRequests, columns: Sequence[str]
) -> list[RequestOutcome]:
    """What this version did with each finding of the critic's latest review."""
    outcomes = []
    for finding in critic_findings(item):
        prefix = _CHANGES.get(finding.action) if finding.action else None
        changes = [a for a in requests.addressed if prefix and a.startswith(prefix)]
        if finding.action in ("investigate_leakage", "drop_columns", "change_target") and not [
            c for c in finding.columns if c in columns
        ]:
            changes = []  # no column of the dataset named: nothing was changed for it
        request = render_finding(finding)
        if changes:
            outcomes.append(RequestOutcome(request=request, done=True, reason="; ".join(changes)))
        else:
            outcomes.append(
                RequestOutcome(
                    request=request,
                    done=False,
                    reason=_why_not(finding),
                )
            )
    return outcomes


def _why_not(finding: Finding) -> str:
    if finding.action == "do_request":
        return "the offline ML agent cannot do this request; an LLM-backed run may"
    if finding.action in ("investigate_leakage", "drop_columns", "change_target"):
        return "the finding names no column of the dataset to act on"
    return "the offline ML agent has no change for this kind of finding"
