"""Accuracy, macro-F1 and the confusion matrix (JSON and a PNG drawn with Pillow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


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
    """Write ``<stem>.json`` (counts and labels) and ``<stem>.png`` (a row-normalised heat map)."""
    out_stem = Path(out_stem)
    js = out_stem.with_suffix(".json")
    js.write_text(json.dumps({"classes": classes, "matrix": cm.tolist(), "rows": "true", "columns": "predicted",
                              "accuracy": accuracy(cm), "macro_f1": macro_f1(cm)}, indent=2))
    cell, left, top = 56, 150, 150
    n = len(classes)
    img = Image.new("RGB", (left + n * cell + 20, top + n * cell + 40), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=13)  # Pillow >= 10.1 ships a scalable font
    except TypeError:
        font = ImageFont.load_default()
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, np.maximum(rows, 1))
    draw.text((10, 2), title or "confusion matrix (rows: true, columns: predicted)", fill="black", font=font)
    for i, name in enumerate(classes):
        draw.text((10, top + i * cell + cell // 2 - 6), name[:22], fill="black", font=font)
        label = Image.new("RGB", (130, 14), "white")
        ImageDraw.Draw(label).text((0, 0), name[:22], fill="black", font=font)
        img.paste(label.rotate(90, expand=True), (left + i * cell + cell // 2 - 7, 19))
        for j in range(n):
            v = float(norm[i, j])
            shade = int(255 * (1 - v))
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255), outline="grey")
            draw.text((x0 + 6, y0 + cell // 2 - 6), str(int(cm[i, j])), fill="white" if v > 0.5 else "black", font=font)
    png = out_stem.with_suffix(".png")
    img.save(png)
    return js, png
