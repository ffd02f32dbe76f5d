"""Results as plain JSON values: what metrics.json and eda_summary.json may hold."""

import math

import numpy as np


def json_safe(value: object) -> object:
    """Plain JSON values: numpy numbers become Python ones, NaN and infinities become null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
