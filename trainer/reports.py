"""Reports a training run writes: PNG figures, the five-mode comparison table, the model card.

Every file is written atomically (a temp file in the same folder, then `os.replace`), so a reader
never sees half a figure. Figures use matplotlib's object API (`Figure`), not pyplot's global state.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on training servers; set before anything imports pyplot
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402

from edge_client.fileio import atomic_write  # noqa: E402
from edge_client.privacy_figures import epsilon_str  # noqa: E402

MODES = ("central", "central-dp", "fedavg", "fl-parallel-dp", "dopamine")
_COLOURS = {"central": "#7f7f7f", "central-dp": "#1f77b4", "fedavg": "#2ca02c",
            "fl-parallel-dp": "#ff7f0e", "dopamine": "#d62728"}
_DPI = 130


def _save(fig: Figure, path: str | Path) -> Path:
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=_DPI))


def write_confusion_png(confusion, class_names, path, *, title: str) -> Path:
    """Heat map of a confusion matrix: counts in the cells, colour = share of the true class (row).

    Args:
        confusion: (C, C) non-negative integer counts, rows true, columns predicted.
        class_names: C names, in grade order.
        path: where to write the PNG.
        title: figure title (e.g. "dopamine, test, round 12").

    Returns:
        The path written.

    Raises:
        ValueError: naming `confusion` or `class_names` when they are malformed.
    """
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 2:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any() or (counts != np.round(counts)).any():
        raise ValueError("confusion must hold non-negative integer counts")
    if len(class_names) != counts.shape[0]:
        raise ValueError(f"class_names has {len(class_names)} names for a {counts.shape[0]}-class "
                         f"confusion matrix")
    counts = counts.astype(np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    # Row-normalised: a rare grade's errors stay visible next to thousands of "No DR".
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)

    size = 1.2 * len(class_names) + 2.5
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            colour = "white" if share[i, j] > 0.55 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                    color=colour, fontsize=9)
    ticks = range(len(class_names))
    labels = [f"{k}: {name}" for k, name in enumerate(class_names)]
    ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel("predicted grade")
    ax.set_ylabel(f"true grade (n = {int(counts.sum())})")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true grade")
    fig.tight_layout()
    return _save(fig, path)


def _series(rows: list[dict], x_key: str, y_key: str) -> tuple[list, list]:
    """The (x, y) points of rows whose y is present and not None."""
    points = [(r[x_key], r[y_key]) for r in rows if r.get(y_key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _check_rows(rows, name: str, x_key: str) -> None:
    if not rows:
        raise ValueError(f"{name} is empty: no metrics rows to plot")
    missing = [i for i, r in enumerate(rows) if not isinstance(r, dict) or x_key not in r]
    if missing:
        raise ValueError(f"{name}: rows {missing[:5]} lack the {x_key!r} field")


def _style(ax, xlabel: str, ylabel: str, title: str, *, legend: str | None = None) -> None:
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc=legend, fontsize=8)


def _accuracy_limits(ax, rows: list[dict], keys) -> None:
    """0-1 with a margin, lower when a κ is negative (worse than chance must stay visible)."""
    lowest = min([r[k] for r in rows for k in keys if r.get(k) is not None], default=0.0)
    ax.set_ylim(min(-0.05, lowest - 0.05), 1.05)


def write_curves_png(rows: list[dict], path, *, title: str) -> Path:
    """One run's curves: accuracy (val/test) and val κ vs round (left), ε vs round (right).

    The round kept on validation is marked with a dotted vertical line.

    Args:
        rows: metrics.jsonl rows with round, loss, val_accuracy, test_accuracy, val_kappa and
            epsilon (None for non-private runs).
        path: where to write the PNG.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: naming `rows` when it is empty or a row lacks `round`.
    """
    _check_rows(rows, "rows", "round")
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    for key, label, style in (("val_accuracy", "validation accuracy", "-o"),
                              ("test_accuracy", "test accuracy", "-s"),
                              ("val_kappa", "validation κ (quadratic)", ":")):
        x, y = _series(rows, "round", key)
        if x:
            left.plot(x, y, style, markersize=3, label=label)
    if any(r.get("val_accuracy") is not None for r in rows):
        left.axvline(best_on_validation(rows)["round"], color="grey", linestyle=":",
                     label="kept (best validation)")
    _accuracy_limits(left, rows, ("val_accuracy", "test_accuracy", "val_kappa"))
    _style(left, "round", "accuracy / κ", "accuracy", legend="lower right")

    x, y = _series(rows, "round", "epsilon")
    if x:
        right.plot(x, y, "-o", markersize=3, color=_COLOURS["dopamine"], label="ε spent")
        right.set_ylim(bottom=0)
    else:
        right.text(0.5, 0.5, "no differential privacy\n(ε = ∞)", ha="center", va="center",
                   transform=right.transAxes, fontsize=12)
        right.set(xticks=[], yticks=[])  # an empty 0-1 scale would suggest ε was measured
    _style(right, "round", "ε", "privacy spent", legend="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def write_compare_png(runs: dict[str, list[dict]], path) -> Path:
    """The paper-style figure: test accuracy vs epoch (left), ε vs epoch (right), a line per mode.

    Args:
        runs: mode name -> metrics rows, each with `epoch` (float), `test_accuracy` and `epsilon`
            (None for non-private modes, which get a legend entry "no DP (ε = ∞)" instead of a line).
        path: where to write the PNG.

    Returns:
        The path written.

    Raises:
        ValueError: naming `runs` when it is empty or a run has no rows or rows without `epoch`.
    """
    if not runs:
        raise ValueError("runs is empty: nothing to compare")
    for mode, rows in runs.items():
        _check_rows(rows, f"runs[{mode!r}]", "epoch")
    order = [m for m in MODES if m in runs] + sorted(m for m in runs if m not in MODES)
    fig = Figure(figsize=(12, 4.6))
    left, right = fig.subplots(1, 2)
    no_dp = []
    for index, mode in enumerate(order):
        colour = _COLOURS.get(mode, f"C{(index + 5) % 10}")
        x, y = _series(runs[mode], "epoch", "test_accuracy")
        if x:
            left.plot(x, y, "-", color=colour, label=mode)
        x, y = _series(runs[mode], "epoch", "epsilon")
        if x:
            right.plot(x, y, "-", color=colour, label=mode)
        else:
            no_dp.append(Line2D([], [], color=colour, linestyle="none", marker="x",
                                label=f"{mode}: no DP (ε = ∞, no line)"))
    _accuracy_limits(left, [r for rows in runs.values() for r in rows], ("test_accuracy",))
    _style(left, "epoch", "test accuracy", "test accuracy", legend="lower right")
    right.legend(handles=right.get_legend_handles_labels()[0] + no_dp, loc="upper left", fontsize=8)
    right.set_ylim(bottom=0)
    _style(right, "epoch", "ε", "privacy spent (ε at the run's δ)")
    fig.tight_layout()
    return _save(fig, path)


def _fmt(x, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def _privacy_cells(summary: dict, rows: list[dict], mode: str) -> tuple[str, str, str]:
    """ε (rounded up), δ, accountant cells; ε never appears without its δ and accountant."""
    epsilon = summary.get("epsilon")
    if epsilon is None:  # the whole run's ε: the kept round was chosen after seeing every round
        spent = [r["epsilon"] for r in rows if r.get("epsilon") is not None]
        epsilon = max(spent) if spent else None
    if epsilon is None:
        return "∞ (no DP)", "—", "—"
    delta, accountant = summary.get("delta"), summary.get("accountant")
    if delta is None or not accountant:
        raise ValueError(f"summaries[{mode!r}] has ε = {epsilon} but no delta/accountant: "
                         "ε is only meaningful with both")
    return epsilon_str(epsilon), f"{delta:g}", str(accountant)


def best_on_validation(rows: list[dict]) -> dict:
    """The row to keep: highest val_accuracy, then highest val_kappa, then the earliest round.

    Never looks at test metrics: choosing on test would make them optimistic.

    Raises:
        ValueError: naming `rows` if no row has a val_accuracy.
    """
    scored = [r for r in rows if r.get("val_accuracy") is not None]
    if not scored:
        raise ValueError("rows: no row has a val_accuracy to choose the kept round on")
    return max(scored, key=lambda r: (r["val_accuracy"], r.get("val_kappa") or -math.inf,
                                      -r["round"]))


def compare_table_md(summaries: dict[str, dict]) -> str:
    """Markdown table comparing modes; the kept round is chosen on validation, never on test.

    Args:
        summaries: mode -> {"rows": metrics.jsonl rows (round, val_accuracy, test_accuracy,
            optional val_kappa / test_kappa / epsilon), optional "epsilon" (the run's final ε;
            default: the largest ε in rows), "delta", "accountant" (required when ε is set)}.

    Returns:
        The table as a markdown string (header, separator, one line per mode, trailing newline).

    Raises:
        ValueError: naming `summaries` or the mode whose summary is incomplete.
    """
    if not summaries:
        raise ValueError("summaries is empty: nothing to compare")
    lines = ["| mode | final test acc | kept round (best val acc) | val acc (kept) | "
             "test acc (kept) | test κ (kept) | ε | δ | accountant |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = [m for m in MODES if m in summaries] + sorted(m for m in summaries if m not in MODES)
    for mode in order:
        rows = summaries[mode].get("rows")
        if not rows:
            raise ValueError(f"summaries[{mode!r}] has no rows")
        try:
            kept = best_on_validation(rows)
        except ValueError as exc:
            raise ValueError(f"summaries[{mode!r}].{exc}") from None
        final = max(rows, key=lambda r: r["round"])
        eps, delta, accountant = _privacy_cells(summaries[mode], rows, mode)
        lines.append(f"| {mode} | {_fmt(final.get('test_accuracy'))} | {kept['round']} | "
                     f"{_fmt(kept['val_accuracy'])} | {_fmt(kept.get('test_accuracy'))} | "
                     f"{_fmt(kept.get('test_kappa'))} | {eps} | {delta} | {accountant} |")
    return "\n".join(lines) + "\n"

