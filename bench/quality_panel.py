"""The fixed panel of `make bench-quality`: datasets bundled with scikit-learn and synthetic ones
built deterministically to mimic the cases where the offline scientist used to fall behind.

Each entry is a goal (as a person would type it), the target column and a builder; nothing is
downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine

from tests.sample_data import make_churn


@dataclass(frozen=True)
class PanelDataset:
    name: str
    goal: str
    target: str
    build: Callable[[], pd.DataFrame]


def breast_cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
    return frame


def wine() -> pd.DataFrame:
    data = load_wine(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["cultivar"] = data.target
    return frame


def diabetes() -> pd.DataFrame:
    frame = load_diabetes(as_frame=True).frame
    return frame.rename(columns={"target": "progression"})


def digits() -> pd.DataFrame:
    data = load_digits(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["digit"] = data.target
    return frame


def caravan_like(rows: int = 10_000, seed: int = 1) -> pd.DataFrame:
    """About 6% buyers among many weak, coded socio-demographic features (like CoIL caravan,
    whose training and test parts together have about 10,000 rows)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 10, size=(rows, 80))
    frame = pd.DataFrame(codes, columns=[f"M{i:02d}" for i in range(80)])
    frame["customer_type"] = rng.integers(1, 42, rows)  # a code, better read as a category
    frame["contribution_car"] = rng.choice([0, 5, 6, 7], rows, p=[0.5, 0.2, 0.2, 0.1])
    frame["boat_policies"] = rng.choice([0, 1, 2], rows, p=[0.97, 0.025, 0.005])
    type_effect = rng.normal(0, 0.6, 42)
    logit = (
        -3.6
        + 0.09 * (codes[:, :12] - 4.5) @ rng.normal(0, 1, 12)
        + 0.35 * (frame["contribution_car"] == 6)
        + 1.5 * (frame["boat_policies"] > 0)
        + type_effect[frame["customer_type"]]
        + 0.25 * ((codes[:, 3] > 6) & (codes[:, 7] < 3))
    )
    frame["buys_caravan_policy"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def taxi_like(rows: int = 20_000, seed: int = 2) -> pd.DataFrame:
    """Tips: zero for cash, a heavy-tailed share of the fare for cards, with interactions."""
    rng = np.random.default_rng(seed)
    distance = rng.lognormal(0.8, 0.8, rows).round(2)
    hour = rng.integers(0, 24, rows)
    minutes = (
        distance * rng.uniform(2.5, 6, rows) * np.where((hour > 7) & (hour < 19), 1.6, 1.0)
    ).round(1)
    zone = rng.integers(0, 120, rows)
    payment = rng.choice(["card", "cash", "dispute", "no_charge"], rows, p=[0.68, 0.29, 0.02, 0.01])
    passengers = rng.choice([1, 2, 3, 4, 5, 6], rows, p=[0.7, 0.14, 0.05, 0.03, 0.05, 0.03])
    fare = (2.5 + 1.6 * distance + 0.35 * minutes + np.where(zone < 10, 5.0, 0.0)).round(2)
    generosity = rng.lognormal(0, 0.45, rows) * np.where(zone % 7 == 0, 1.4, 1.0)
    night = (hour >= 22) | (hour < 5)
    tip = np.where(payment == "card", fare * 0.16 * generosity * np.where(night, 1.25, 1.0), 0.0)
    tip += np.where(rng.random(rows) < 0.01, rng.pareto(1.5, rows) * 10, 0.0)  # rare huge tips
    return pd.DataFrame(
        {
            "trip_distance": distance,
            "trip_minutes": minutes,
            "pickup_hour": hour,
            "pickup_zone": [f"zone_{z}" for z in zone],
            "payment_type": payment,
            "passenger_count": passengers,
            "fare_amount": fare,
            "tip_amount": tip.round(2),
        }
    )


def high_cardinality(rows: int = 8000, seed: int = 3) -> pd.DataFrame:
    """Fraud by merchant: 600 merchants, each with its own rate, next to a few numbers."""
    rng = np.random.default_rng(seed)
    merchants = rng.integers(0, 600, rows)
    merchant_effect = rng.normal(0, 1.2, 600)
    amount = rng.lognormal(3.5, 1.1, rows).round(2)
    hour = rng.integers(0, 24, rows)
    country = rng.choice(["home", "eu", "us", "asia", "other"], rows, p=[0.6, 0.2, 0.1, 0.05, 0.05])
    logit = (
        -2.2
        + merchant_effect[merchants]
        + 0.4 * (np.log(amount) - 3.5)
        + 0.8 * (hour < 5)
        + np.where(country == "other", 1.0, 0.0)
    )
    return pd.DataFrame(
        {
            "merchant": [f"m{m:04d}" for m in merchants],
            "amount": amount,
            "hour": hour,
            "country": country,
            "card_age_days": rng.integers(1, 3000, rows),
            "is_fraud": np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no"),
        }
    )


def missing_values(rows: int = 3000, seed: int = 4) -> pd.DataFrame:
    """House values where a quarter of each feature is missing, and missing means something."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 10))
    value = 200 + 40 * X[:, 0] + 25 * X[:, 1] * X[:, 2] + 30 * np.tanh(X[:, 3]) + 15 * X[:, 4]
    value += rng.normal(0, 20, rows)
    frame = pd.DataFrame(X.round(3), columns=[f"f{i}" for i in range(10)])
    heating = rng.choice(["gas", "oil", "heat_pump", ""], rows, p=[0.5, 0.2, 0.15, 0.15])
    frame["heating"] = pd.Series(heating).replace("", np.nan)  # unknown for some houses
    value += np.where(frame["heating"] == "heat_pump", 30, 0)
    for i in range(10):
        frame.loc[rng.random(rows) < 0.25, f"f{i}"] = np.nan
    # Missing renovation year: mostly never renovated, worth less.
    renovated = rng.random(rows) < 0.6
    frame["renovated_year"] = np.where(renovated, rng.integers(1990, 2024, rows), np.nan)
    value -= np.where(renovated, 0, 35)
    frame["house_value"] = value.round(1)
    return frame


def small_n(rows: int = 250, seed: int = 5) -> pd.DataFrame:
    """Few rows, a non-linear signal and noise features: where variance decides."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 15))
    logit = 1.2 * X[:, 0] - 1.0 * X[:, 1] ** 2 + 0.8 * X[:, 2] * X[:, 3] + 0.6
    frame = pd.DataFrame(X.round(3), columns=[f"x{i}" for i in range(15)])
    frame["responded"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return frame


PANEL: tuple[PanelDataset, ...] = (
    PanelDataset("breast_cancer", "classify tumours by diagnosis", "diagnosis", breast_cancer),
    PanelDataset("wine", "predict the wine cultivar", "cultivar", wine),
    PanelDataset("diabetes", "predict disease progression", "progression", diabetes),
    PanelDataset("digits", "recognise the handwritten digit", "digit", digits),
    PanelDataset("churn", "build a customer churn prediction model", "Churn", make_churn),
    PanelDataset(
        "caravan_like",
        "predict who buys a caravan insurance policy",
        "buys_caravan_policy",
        caravan_like,
    ),
    PanelDataset("taxi_like", "predict the tip amount of a taxi trip", "tip_amount", taxi_like),
    PanelDataset(
        "high_cardinality", "detect fraudulent card payments", "is_fraud", high_cardinality
    ),
    PanelDataset("missing_values", "predict the house value", "house_value", missing_values),
    PanelDataset("small_n", "predict who responded to the campaign", "responded", small_n),
)
