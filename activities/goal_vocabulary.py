"""The words people use for what they want predicted: concept families and question shapes.

Reading a goal (activities/column_plan.py) needs to know that "leaving", "quit" and
"attrition" all mean a column called `Churn` or `Exited`, that "earn" means `Salary`, and
that "how much" asks for a quantity while "at risk of" asks for a yes or no. That knowledge
is data, kept here so it can grow without touching the scoring.

Single words are compared by their Snowball root ("leaving" -> "leav"), so every inflection
of a listed word counts. Phrases of several words are compared as written (lower case), with
the variants listed, because their meaning depends on the exact words ("credit scoring" asks
about repayment, "credit score" names a column).
"""

from __future__ import annotations

from dataclasses import dataclass

from activities.column_names import normalize, root
from workflows.models import TaskType


def _roots(words: str) -> frozenset[str]:
    return frozenset(root(w) for w in words.split())


def _phrases(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


@dataclass(frozen=True)
class Concept:
    """One family of meaning: how a goal says it, how a column is called, what task it is."""

    name: str
    goal_roots: frozenset[str]  # single goal words, as roots
    goal_phrases: tuple[str, ...]  # goal phrases, as written
    column_roots: frozenset[str]  # words of a column name, as roots
    column_names: frozenset[str]  # whole column names, without separators
    task: TaskType | None  # what a column of this family is predicted as; None: either

    def named_by(self, roots: set[str], text: str) -> bool:
        return bool(self.goal_roots & roots) or any(_has_phrase(text, p) for p in self.goal_phrases)

    def phrase_words(self, text: str) -> set[str]:
        """The words of `text` this family's phrases account for."""
        words: set[str] = set()
        for phrase in self.goal_phrases:
            if _has_phrase(text, phrase):
                words.update(phrase.split())
        return words


def _has_phrase(text: str, phrase: str) -> bool:
    return f" {phrase} " in text


def _concept(
    name: str,
    goal_words: str,
    column_words: str,
    task: TaskType | None,
    goal_phrases: str = "",
    column_names: str = "",
) -> Concept:
    return Concept(
        name=name,
        goal_roots=_roots(goal_words),
        goal_phrases=_phrases(goal_phrases),
        column_roots=_roots(column_words),
        column_names=frozenset(normalize(n) for n in (column_words + " " + column_names).split()),
        task=task,
    )


CONCEPTS: tuple[Concept, ...] = (
    _concept(
        "churn",
        "churn churning attrition leave leaving left quit quitting cancel cancellation "
        "unsubscribe retention retain stay exit defect lapse renew resign abandon lose",
        "churn churned attrition exited exit left leave cancelled canceled cancel retained "
        "stayed lapsed resigned renewed",
        "classification",
        "drop out, walk away, stop using, move to a competitor, switch provider",
        "ischurn churnflag hasleft iscanceled iscancelled",
    ),
    _concept(
        "money",
        "money salary salaries earn earning income wage pay paid price priced cost costs "
        "costly charge charged revenue spend spent fee fare tip worth valuation rent "
        "compensation bill expensive cheap afford sale sell",
        "salary wage income earnings pay price cost charges charge revenue fee fare tip tips "
        "amount value rent spend spending bill compensation adr sales",
        "regression",
        "sale price, selling price, house value, home value, market value, property value",
        "saleprice medhouseval medianhousevalue housevalue listprice",
    ),
    _concept(
        "default",
        "default defaulted repay repayment repaid delinquent delinquency creditworthy "
        "creditworthiness insolvent arrears writeoff",
        "default defaulted delinquent delinquency dlq bad risk repaid writeoff",
        "classification",
        "credit scoring, credit risk, credit risks, bad loan, bad loans, loan status, "
        "pay back, paid back, charged off, charge off, bad debt, good or bad, risky borrowers, "
        "risky applicants",
        "isdefault loanstatus badloan seriousdlqin2yrs creditrisk goodbad defaultpaymentnextmonth",
    ),
    _concept(
        "fraud",
        "fraud fraudulent scam scams fake suspicious chargeback",
        "fraud fraudulent class label",
        "classification",
        column_names="isfraud isfraudulent",
    ),
    _concept(
        "survival",
        "survive survival survivor die died death dead perish alive mortality live",
        "survived survival died death dead deceased alive mortality",
        "classification",
        column_names="deathevent",
    ),
    _concept(
        "diagnosis",
        "diagnose diagnosis malignant benign cancer tumour tumor disease diseased diabetes "
        "diabetic sick illness stroke infected positive attack",
        "diagnosis malignant outcome disease diabetes stroke condition result",
        "classification",
        "heart disease, heart attack",
        "hasdisease heartdisease",
    ),
    _concept("progression", "progression progress", "progression target", "regression"),
    _concept(
        "conversion",
        "click convert conversion purchase buy bought subscribe subscription signup respond "
        "response enrol enroll deposit",
        "clicked click converted conversion purchased purchase subscribed response responded "
        "deposit bought y",
        "classification",
        "sign up, take up, term deposit",
    ),
    _concept(
        "quality",
        "quality rating rate rated grade score stars satisfaction satisfied good",
        "quality rating grade score stars satisfaction",
        None,
    ),
    _concept(
        "duration",
        "duration time long days hours minutes delay wait length",
        "duration time days hours minutes length delay los",
        "regression",
        "how long, length of stay, trip duration",
        "tripduration waittime leadtime lengthofstay",
    ),
    _concept(
        "count",
        "count quantity units sold demand visits rentals orders",
        "count cnt quantity qty units demand visits rentals orders sold",
        "regression",
        "how many, number of",
        "unitssold",
    ),
    _concept(
        "kind",
        "species flower iris variety cultivar breed kind type category",
        "species variety cultivar breed class type category label",
        "classification",
    ),
    _concept("spam", "spam junk phishing", "spam label class", "classification"),
    _concept(
        "sentiment", "sentiment polarity opinion", "sentiment polarity label", "classification"
    ),
    _concept(
        "approval",
        "approve approved approval accept accepted grant granted reject rejected",
        "approved approval accepted granted status",
        "classification",
    ),
    _concept("winning", "win won winner lose lost victory", "win won winner result", None),
    _concept("age", "age old", "age", "regression", "how old"),
)

# Names data sets give their target when it has no better name. A column so called is
# plausible, but only a family or the goal's words make it sure.
GENERIC_TARGET_NAMES = frozenset("target label labels y class outcome response result".split())

# Abbreviations in column names, spelled out so the goal's words can meet them.
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "adr": ("average", "daily", "rate", "price"),
    "amt": ("amount",),
    "avg": ("average",),
    "cnt": ("count",),
    "dlq": ("delinquent",),
    "chol": ("cholesterol",),
    "inc": ("income",),
    "int": ("interest",),
    "los": ("length", "stay"),
    "med": ("median",),
    "num": ("number",),
    "pct": ("percent",),
    "qty": ("quantity",),
    "qual": ("quality",),
    "temp": ("temperature",),
    "val": ("value",),
}

# Goal words that never name the target on their own: grammar, modelling verbs, and the
# things a dataset's rows are (a "customer" is not a column, and "customerID" is not the
# answer to "which customers will leave?").
GOAL_FILLER = _roots(
    "a an the of to for and or in on at is are be been will would can could should may might "
    "do does did has have had it its this that these those my our us we they their them i you "
    "your me what which whether who whom whose how much many when where why if than then not "
    "no yes each every per as so most more less likely likelihood probability chance odds "
    "risk build create train make develop fit design set up get give show tell find work out "
    "predict prediction predicting predictor forecast forecasting estimate estimating guess "
    "classify classification classifier regression regressor model modelling modeling "
    "machine learning ml ai data dataset column columns value values number target feature "
    "identify detect flag spot know want need help going end up "
    "customer client user subscriber member employee staff worker player passenger patient "
    "person people borrower applicant guest traveller traveler visitor buyer seller student "
    "house home flat apartment property car vehicle ride trip booking hotel room night "
    "company bank account loan wine transaction record row case item one someone new next "
    "year week day future given"
)

# Words of column names that carry no meaning of their own ("is_canceled", "has_left").
COLUMN_FILLER = _roots("is has was did do flag ind indicator the of per in")

# How a question is shaped tells the task: phrases as written, lower case. A strong shape
# outweighs a weak one ("which customers will spend the most?" asks how much, not which).
REGRESSION_SHAPES = _phrases(
    "how much, how many, how long, how high, how big, how large, how old, how far, "
    "how expensive, what price, what will it cost, amount of, number of, regression, "
    "as a number, continuous"
)
CLASSIFICATION_SHAPES = _phrases(
    "whether, at risk, risk of, likely, likelihood, probability, chance of, odds of, or not, "
    "classify, classification, classifier, yes or no, binary, tell apart, distinguish"
)
WEAK_REGRESSION_SHAPES = _phrases("forecast, estimate, what is the, what will be")
WEAK_CLASSIFICATION_SHAPES = _phrases(
    "which, who, identify, detect, flag, spot, category, categories, is it, is this, "
    "will they, will it, will a, will the, will this, does, did, are they"
)
