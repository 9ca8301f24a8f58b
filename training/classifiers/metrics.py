"""Accuracy, macro-F1 and the confusion matrix (JSON, and a PNG drawn with matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flare.runtime.foundation.atomic import write_atomically, write_json


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Rows are true classes, columns predicted."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over classes present in truth or prediction (absent classes would read 0)."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    present = (tp + fp + fn) > 0
    if not present.any():
        return 0.0
    f1 = np.where(present, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    return float(f1[present].mean())


def save_confusion(cm: np.ndarray, classes: list[str], out_stem: Path, title: str = "") -> tuple[Path, Path]:
    """Write ``<stem>.json`` (counts and labels) and ``<stem>.png`` (a heat map), both atomically.

    Each cell of the plot shows its count and its share of the true class (the row), and is
    shaded by that share, so classes of different sizes compare at a glance.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, whatever the user's default backend
    import matplotlib.pyplot as plt

    out_stem = Path(out_stem)
    js = write_json(out_stem.with_suffix(".json"),
                    {"classes": classes, "matrix": cm.tolist(), "rows": "true", "columns": "predicted",
                     "accuracy": accuracy(cm), "macro_f1": macro_f1(cm)})
    n = len(classes)
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = 1.2 + 0.9 * n
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    try:
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
        ax.set_xticks(range(n), labels=classes, rotation=45, ha="right")
        ax.set_yticks(range(n), labels=classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title or "confusion matrix")
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(cm[i, j])}\n{shares[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
        fig.tight_layout()
        png = write_atomically(out_stem.with_suffix(".png"), lambda path: fig.savefig(path, format="png", dpi=100))
    finally:
        plt.close(fig)
    return js, png
