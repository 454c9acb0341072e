"""Evaluation metrics for the DR grader: numpy only, so the same code can score any runtime's output.

Every value `evaluate` returns is a plain float, int, list or None, so a row goes straight into
`metrics.jsonl`, the checkpoint and the manifest. Undefined values (a class absent from the labels,
AUC with one class) are None, never NaN: JSON has no NaN.
"""
from __future__ import annotations

import math

import numpy as np

# Rows of `probs` must sum to 1 within this: softmax in float32 is off by ~1e-7, a bug by much more.
_PROB_SUM_TOL = 1e-3


def _as_labels(values, name: str, num_classes: int | None = None) -> np.ndarray:
    """A 1-D int64 array of class indices; ValueError naming `name` otherwise."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if num_classes is not None and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got values "
                         f"{int(arr.min())}..{int(arr.max())}")
    return arr.astype(np.int64)


def _none_if_nan(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Count matrix, rows true class, columns predicted class.

    Args:
        y_true: (N,) integer labels in 0..num_classes-1.
        y_pred: (N,) integer predictions in the same range.
        num_classes: number of classes C (>= 2).

    Returns:
        (C, C) int64 array.

    Raises:
        ValueError: naming the argument that is malformed or out of range.
    """
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    y_true = _as_labels(y_true, "y_true", num_classes)
    y_pred = _as_labels(y_pred, "y_pred", num_classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred has shape {y_pred.shape}, y_true {y_true.shape}: they must match")
    return np.bincount(y_true * num_classes + y_pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def quadratic_weighted_kappa(y_true, y_pred, num_classes: int) -> float:
    """Cohen's kappa with quadratic weights (the APTOS / Kaggle DR metric).

    Args:
        y_true: (N,) integer grades in 0..num_classes-1.
        y_pred: (N,) integer predicted grades.
        num_classes: number of grades C.

    Returns:
        Kappa in [-1, 1]; NaN when undefined (both raters put every image in the same one grade,
        so the chance agreement is already perfect).

    Raises:
        ValueError: naming the malformed argument.
    """
    observed = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    n = observed.sum()
    grades = np.arange(num_classes)
    weights = (grades[:, None] - grades[None, :]) ** 2 / (num_classes - 1) ** 2
    # Chance agreement: the outer product of the two raters' marginal histograms.
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / n
    denominator = float((weights * expected).sum())
    if denominator == 0.0:
        return float("nan")
    return 1.0 - float((weights * observed).sum()) / denominator


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve by the rank (Mann-Whitney U) formula, ties counted as one half.

    Args:
        labels: (N,) binary labels (bool or 0/1 integers); 1 = positive.
        scores: (N,) finite real scores, higher = more likely positive.

    Returns:
        AUC in [0, 1], or None when only one class is present (the AUC is undefined).

    Raises:
        ValueError: naming the argument with the wrong shape, values or non-finite scores.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if scores.shape != labels.shape:
        raise ValueError(f"scores has shape {scores.shape}, labels {labels.shape}: they must match")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be binary (0/1 or bool)")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite (no NaN or inf)")
    positive = labels.astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    # Mid-ranks: every member of a tie group gets the mean of the ranks the group spans.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    ranks = (first_rank + (counts - 1) / 2.0)[inverse.reshape(-1)]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def expected_calibration_error(y_true, probs, *, bins: int = 15) -> float:
    """ECE of the top-1 confidence over equal-width bins (lo, hi] of [0, 1].

    Args:
        y_true: (N,) integer labels.
        probs: (N, C) probabilities.
        bins: number of equal-width bins (>= 1).

    Returns:
        sum over bins of (share of samples in bin) * |accuracy in bin - mean confidence in bin|.

    Raises:
        ValueError: naming the malformed argument.
    """
    y_true, probs = _check_inputs(y_true, probs)
    if int(bins) != bins or bins < 1:
        raise ValueError(f"ece_bins must be an integer >= 1, got {bins!r}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, weights=correct, minlength=bins)
                 - np.bincount(index, weights=confidence, minlength=bins))
    # |sum(correct) - sum(conf)| / N per bin equals share * |acc - conf|.
    return float(gap[count > 0].sum() / y_true.size)


def _check_inputs(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with C >= 2, got {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"probs must be floating point, got dtype {probs.dtype}")
    probs = probs.astype(np.float64)
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("probs must be finite and non-negative")
    row_sums = probs.sum(axis=1)
    worst = int(np.abs(row_sums - 1.0).argmax()) if probs.shape[0] else 0
    if probs.shape[0] and abs(row_sums[worst] - 1.0) > _PROB_SUM_TOL:
        raise ValueError(f"probs rows must sum to 1 (softmax output); row {worst} sums to "
                         f"{row_sums[worst]:.6f}")
    y_true = _as_labels(y_true, "y_true", probs.shape[1])
    if y_true.shape[0] != probs.shape[0]:
        raise ValueError(f"y_true has {y_true.shape[0]} labels but probs has {probs.shape[0]} rows")
    return y_true, probs


def evaluate(y_true, probs, *, referable_grade: int = 2, ece_bins: int = 15) -> dict:
    """All the metrics a training run reports, as JSON-ready values.

    Args:
        y_true: (N,) integer grades in 0..C-1.
        probs: (N, C) predicted probabilities (rows sum to 1).
        referable_grade: grades >= this are "referable DR" (default 2: moderate or worse).
        ece_bins: number of equal-width bins for the calibration error.

    Returns:
        dict with accuracy, kappa (quadratic; None if undefined), per_class_recall (list, None
        where the class is absent), referable_sensitivity / referable_specificity (None without
        positives / negatives), referable_auc (score = probability mass on referable grades; None
        with one class), ece, majority_rate (share of the most frequent true grade: the accuracy
        of always guessing it), n, confusion (C x C ints, rows true, columns predicted).

    Raises:
        ValueError: naming the malformed argument (shapes, probabilities, label range, options).
    """
    y_true, probs = _check_inputs(y_true, probs)
    num_classes = probs.shape[1]
    if isinstance(referable_grade, bool) or int(referable_grade) != referable_grade \
            or not 1 <= referable_grade <= num_classes - 1:
        raise ValueError(f"referable_grade must be an integer in 1..{num_classes - 1}, "
                         f"got {referable_grade!r}")
    y_pred = probs.argmax(axis=1)
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    support = confusion.sum(axis=1)
    recall = [float(confusion[c, c] / support[c]) if support[c] else None for c in range(num_classes)]

    true_ref = y_true >= referable_grade
    pred_ref = y_pred >= referable_grade
    n_pos, n_neg = int(true_ref.sum()), int((~true_ref).sum())
    sensitivity = float((pred_ref & true_ref).sum() / n_pos) if n_pos else None
    specificity = float((~pred_ref & ~true_ref).sum() / n_neg) if n_neg else None

    return {
        "accuracy": float(np.trace(confusion) / y_true.size),
        "kappa": _none_if_nan(quadratic_weighted_kappa(y_true, y_pred, num_classes)),
        "per_class_recall": recall,
        "referable_sensitivity": sensitivity,
        "referable_specificity": specificity,
        "referable_auc": roc_auc(true_ref, probs[:, referable_grade:].sum(axis=1)),
        "ece": expected_calibration_error(y_true, probs, bins=ece_bins),
        "majority_rate": float(support.max() / y_true.size),
        "n": int(y_true.size),
        "confusion": confusion.astype(int).tolist(),
    }
