"""The first step of every saved pipeline: rows as they appear in the CSV become typed features.

All cleaning lives here, inside the model, so the model scores raw rows (a blank "TotalCharges"
included) exactly as it was trained on them. Scripts save the model with cloudpickle, which
stores this class by value, so loading the model needs no code from the orchestrator.
"""

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


def to_number(values: pd.Series) -> pd.Series:
    """Numbers, also when stored as text: blanks and stray text become NaN, as do infinities."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    if not pd.api.types.is_numeric_dtype(values):
        # astype(str) turns NaN into "nan", which to_numeric reads back as NaN.
        values = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
    return values.astype(float).replace([np.inf, -np.inf], np.nan)


def to_category(values: pd.Series) -> pd.Series:
    """Labels as text, one type per column, missing kept missing.

    Whole numbers read as floats (a column with a blank) and as integers (one without) give
    the same label, so training and scoring files agree.
    """
    present = values.notna()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype(float)
        whole = present & np.isfinite(numbers) & (numbers % 1 == 0)
        text = numbers.astype(str)
        text[whole] = numbers[whole].astype("int64").astype(str)
    else:
        text = values.astype(str).str.strip()
    return text.where(present, np.nan).astype(object)


class RawRowCleaner(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Selects the feature columns of raw rows and types them; other columns are ignored."""

    def __init__(
        self, numeric: list[str] | None = None, categorical: list[str] | None = None
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: object = None) -> "RawRowCleaner":
        self._check(X)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        self._check(X)
        columns: dict[str, pd.Series] = {}
        for col in self.numeric or []:
            columns[col] = to_number(X[col])
        for col in self.categorical or []:
            columns[col] = to_category(X[col])
        return pd.DataFrame(columns, index=X.index)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray([*(self.numeric or []), *(self.categorical or [])], dtype=object)

    def _check(self, X: object) -> None:
        if not isinstance(X, pd.DataFrame):
            raise TypeError("the model expects a pandas DataFrame of raw rows with named columns")
        needed = [*(self.numeric or []), *(self.categorical or [])]
        missing = [c for c in needed if c not in X.columns]
        if missing:
            raise ValueError(f"columns missing from the rows: {missing}")
