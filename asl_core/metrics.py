"""Classification figures (METHODS.md section 4), computed with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    """Accuracy, macro-F1 and per-class recall. Classes absent from ``y_true`` get recall 0."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = list(range(num_classes))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class_recall": [float(v) for v in recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)],
        "n": int(y_true.shape[0]),
    }


def confusion(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``[C, C]`` counts, rows are true classes."""
    return confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(range(num_classes)))
