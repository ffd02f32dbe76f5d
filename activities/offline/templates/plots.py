"""Plot helpers shared by generated EDA and training scripts: PNG files written to OUTPUT_DIR.

Each helper draws one figure and returns its file name. A plot that cannot be drawn is reported
by the caller (plot_errors in the script's JSON output), never silently skipped.
"""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in the sandbox; files only

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

MAX_PANELS = 12  # per distribution figure
MAX_HEATMAP_COLUMNS = 30
MAX_BARS = 20


def save_figure(figure: "plt.Figure", out_dir: Path, name: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out_dir / name, dpi=90)
    plt.close(figure)
    return name


def plot_missing_values(df: pd.DataFrame, out_dir: Path) -> str:
    """Share of missing values per column (all columns, so "none missing" shows too)."""
    shares = df.isna().mean().sort_values(ascending=False).head(40)
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.25 * len(shares) + 1)))
    axis.barh([str(c) for c in shares.index][::-1], shares.to_numpy()[::-1], color="#c0504d")
    axis.set_xlim(0, 1)
    axis.set_xlabel("share of rows missing")
    axis.set_title("Missing values per column")
    return save_figure(figure, out_dir, "missing_values.png")


def plot_target_balance(y: pd.Series, task_type: str, out_dir: Path) -> str:
    """Class counts for a classification target, a histogram for a regression target."""
    figure, axis = plt.subplots(figsize=(7, 4))
    if task_type == "classification":
        counts = y.astype(str).value_counts().head(MAX_BARS)
        axis.bar(counts.index.tolist(), counts.to_numpy(), color="#4f81bd")
        axis.set_ylabel("rows")
        axis.set_title(f"Target balance: {y.name}")
        axis.tick_params(axis="x", rotation=45)
    else:
        values = pd.to_numeric(y, errors="coerce").dropna()
        axis.hist(values, bins=40, color="#4f81bd")
        axis.set_xlabel(str(y.name))
        axis.set_title(f"Target distribution: {y.name}")
    return save_figure(figure, out_dir, "target_balance.png")


def plot_distributions(
    df: pd.DataFrame, numeric: list[str], categorical: list[str], out_dir: Path
) -> str:
    """A histogram per numeric feature and a bar chart per categorical one (the first few)."""
    columns = (numeric + categorical)[:MAX_PANELS]
    if not columns:
        raise ValueError("no feature columns to plot")
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
    for axis, column in zip(axes.flat, columns, strict=False):
        if column in numeric:
            values = pd.to_numeric(df[column], errors="coerce")
            values = values[np.isfinite(values)]
            axis.hist(values, bins=30, color="#4f81bd")
        else:
            counts = df[column].astype(str).value_counts().head(10)
            axis.barh(counts.index.tolist()[::-1], counts.to_numpy()[::-1], color="#9bbb59")
        axis.set_title(str(column)[:40], fontsize=9)
    for axis in list(axes.flat)[len(columns) :]:
        axis.set_visible(False)
    return save_figure(figure, out_dir, "distributions.png")


def plot_correlation_heatmap(df: pd.DataFrame, numeric: list[str], out_dir: Path) -> str:
    """Pearson correlations between numeric columns, as a heatmap with the values written in."""
    columns = numeric[:MAX_HEATMAP_COLUMNS]
    if len(columns) < 2:
        raise ValueError("fewer than two numeric columns: there is nothing to correlate")
    corr = df[columns].apply(pd.to_numeric, errors="coerce").corr()
    size = max(5.0, 0.45 * len(columns) + 2)
    figure, axis = plt.subplots(figsize=(size, size * 0.85))
    image = axis.imshow(corr.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    labels = [str(c)[:25] for c in columns]
    axis.set_xticks(range(len(columns)), labels, rotation=90, fontsize=8)
    axis.set_yticks(range(len(columns)), labels, fontsize=8)
    if len(columns) <= 15:
        for i in range(len(columns)):
            for j in range(len(columns)):
                value = corr.iloc[i, j]
                if np.isfinite(value):
                    axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_title("Correlation heatmap (Pearson)")
    return save_figure(figure, out_dir, "correlation_heatmap.png")


def plot_feature_importance(features: list[tuple[str, float]], out_dir: Path) -> str:
    if not features:
        raise ValueError("the model reports no feature importances or coefficients")
    names = [str(n)[:40] for n, _ in features][::-1]
    weights = [w for _, w in features][::-1]
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(features) + 1.5))
    axis.barh(names, weights, color="#8064a2")
    axis.set_title("Feature importance")
    return save_figure(figure, out_dir, "feature_importance.png")


def plot_roc_pr_curves(
    y_true: pd.Series, scores: np.ndarray, classes: list[object], out_dir: Path
) -> list[str]:
    """ROC and precision-recall curves; one curve per class (one-vs-rest) beyond two classes."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    pairs = (
        [(classes[1], scores[:, 1])]
        if len(classes) == 2
        else list(zip(classes, scores.T, strict=True))
    )
    roc_figure, roc_axis = plt.subplots(figsize=(5.5, 5))
    pr_figure, pr_axis = plt.subplots(figsize=(5.5, 5))
    for label, score in pairs[:MAX_BARS]:
        positive = (y_true == label).to_numpy()
        fpr, tpr, _ = roc_curve(positive, score)
        precision, recall, _ = precision_recall_curve(positive, score)
        roc_axis.plot(fpr, tpr, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
        pr_axis.plot(recall, precision, label=f"{label} (base rate {positive.mean():.3f})")
    roc_axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    roc_axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    pr_axis.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    roc_axis.legend(fontsize=8)
    pr_axis.legend(fontsize=8)
    return [
        save_figure(roc_figure, out_dir, "roc_curve.png"),
        save_figure(pr_figure, out_dir, "pr_curve.png"),
    ]


def plot_confusion_matrix(
    y_true: pd.Series, y_pred: np.ndarray, classes: list[object], out_dir: Path
) -> str:
    from sklearn.metrics import confusion_matrix

    shown = classes[:MAX_BARS]
    matrix = confusion_matrix(y_true, y_pred, labels=shown)
    figure, axis = plt.subplots(figsize=(max(4.5, 0.5 * len(shown) + 3),) * 2)
    axis.imshow(matrix, cmap="Blues")
    labels = [str(c)[:20] for c in shown]
    axis.set_xticks(range(len(shown)), labels, rotation=45)
    axis.set_yticks(range(len(shown)), labels)
    for i in range(len(shown)):
        for j in range(len(shown)):
            axis.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8)
    axis.set(xlabel="predicted", ylabel="actual", title="Confusion matrix (test set)")
    return save_figure(figure, out_dir, "confusion_matrix.png")


def plot_regression_diagnostics(y_true: pd.Series, y_pred: np.ndarray, out_dir: Path) -> list[str]:
    """Residuals against predictions, and predictions against the actual values."""
    actual = np.asarray(y_true, dtype=float)
    residuals = actual - y_pred
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(y_pred, residuals, s=8, alpha=0.5)
    axis.axhline(0, color="grey", linestyle="--")
    axis.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals (test set)")
    residual_plot = save_figure(figure, out_dir, "residuals.png")
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.scatter(actual, y_pred, s=8, alpha=0.5)
    low, high = float(np.nanmin(actual)), float(np.nanmax(actual))
    axis.plot([low, high], [low, high], color="grey", linestyle="--")
    axis.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test set)")
    return [residual_plot, save_figure(figure, out_dir, "predicted_vs_actual.png")]


def draw_plots(out_dir: Path, jobs: dict[str, object]) -> tuple[list[str], dict[str, str]]:
    """Run each plot job (a zero-argument callable); the files written and the errors by plot."""
    written: list[str] = []
    errors: dict[str, str] = {}
    for label, job in jobs.items():
        try:
            result = job()  # type: ignore[operator]
        except Exception as error:
            plt.close("all")
            errors[label] = f"{type(error).__name__}: {error}"
            print(f"Plot {label!r} not drawn: {errors[label]}")
            continue
        written.extend(result if isinstance(result, list) else [result])
    return written, errors
