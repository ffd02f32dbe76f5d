"""Generated datasets shared by the tests: realistic, seeded, and small enough to run fast."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_churn(rows: int = 2000, seed: int = 7) -> pd.DataFrame:
    """A telco-like churn table whose Churn really depends on tenure, contract and charges."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 73, rows)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], rows, p=[0.55, 0.25, 0.2])
    payment = rng.choice(["Electronic check", "Mailed check", "Bank transfer", "Credit card"], rows)
    monthly = np.round(rng.normal(65, 25, rows).clip(18, 120), 2)
    senior = rng.binomial(1, 0.16, rows)
    logit = (
        -1.1
        - 0.045 * tenure
        + 0.02 * (monthly - 65)
        + 1.3 * (contract == "Month-to-month")
        - 0.8 * (contract == "Two year")
        + 0.6 * (payment == "Electronic check")
        + 0.4 * senior
    )
    churn = rng.random(rows) < 1 / (1 + np.exp(-logit))
    letters = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))
    frame = pd.DataFrame(
        {
            "customerID": [
                f"{rng.integers(1000, 9999)}-{''.join(rng.choice(letters, 5))}{i}"
                for i in range(rows)
            ],
            "gender": rng.choice(["Female", "Male"], rows),
            "SeniorCitizen": senior,
            "tenure": tenure,
            "Contract": contract,
            "PaymentMethod": payment,
            "MonthlyCharges": monthly,
            # Stored as text with blanks for new customers, as in the well-known telco file.
            "TotalCharges": [f"{v:.2f}" for v in monthly * np.maximum(tenure, 1)],
            "Churn": np.where(churn, "Yes", "No"),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "MonthlyCharges"] = np.nan
    frame.loc[rng.random(rows) < 0.04, "Contract"] = np.nan
    frame.loc[frame.index[tenure == 0][:10], "TotalCharges"] = " "
    return frame
