"""Audit results as a Markdown table and a membership-inference figure (TPR against FPR, log-log).

The claimed ε is shown rounded UP (edge_client.privacy_figures); the empirical bound is a lower
bound, so it is shown rounded DOWN: both roundings keep each figure valid.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from edge_client.fileio import atomic_write  # noqa: E402
from edge_client.privacy_figures import epsilon_str  # noqa: E402
from trainer.audit.bounds import roc_points  # noqa: E402


def lower_str(value: float) -> str:
    """A lower bound to 2 decimals, rounded down."""
    return f"{math.floor(value * 100) / 100:.2f}"


def label(result) -> str:
    """How a row is named: the mode, and a loud mark on a test-only broken mechanism."""
    return result.mode if result.broken is None else f"{result.mode} [TEST-ONLY BREAK: {result.broken}]"


def verdict(result) -> str:
    if result.epsilon is None:
        return "no DP claim"
    if result.flagged:
        return "**claim refuted** (bound > claim)"
    return "consistent (bound ≤ claim)"


def audit_table_md(results) -> str:
    """One line per audit: the claim beside the empirical lower bound."""
    head = ("| mode | claimed ε (rounded up) | δ | accountant | σ | q | DP steps | canaries (members) | auditor sees "
            "| empirical ε ≥ (rounded down) | confidence | correct / guesses | verdict | s |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in results:
        claim = "∞ (no DP)" if r.epsilon is None else epsilon_str(r.epsilon)
        sigma = "—" if r.noise_multiplier is None else f"{r.noise_multiplier:.3f}"
        q = "—" if r.epsilon is None else f"{r.sample_rate:.3f}"
        lines.append(f"| {label(r)} | {claim} | {r.delta:g} | {r.accountant or '—'} | {sigma} | {q} | {r.steps or '—'} "
                     f"| {r.canaries} ({r.members}) | {r.observation} | {lower_str(r.epsilon_lower)} "
                     f"| {r.confidence:.0%} | {r.correct} / {r.guesses} | {verdict(r)} | {r.seconds:.0f} |")
    return "\n".join(lines) + "\n"


def _dp_region(epsilon: float, delta: float, fpr: np.ndarray) -> np.ndarray:
    """The highest TPR any (ε, δ)-DP mechanism allows at each FPR (Kairouz et al. 2015)."""
    return np.minimum.reduce([np.exp(epsilon) * fpr + delta, 1 - np.exp(-epsilon) * (1 - delta - fpr),
                              np.ones_like(fpr)])


def write_roc_png(results, path: str | Path, *, title: str) -> Path:
    """Membership inference on the canaries: TPR against FPR (log-log), one line per audit, and
    for each claimed ε the most any (ε, δ)-DP mechanism allows (dashed grey).

    Raises:
        ValueError: no result given.
    """
    if not results:
        raise ValueError("results is empty: nothing to plot")
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.subplots()
    floor = 1.0 / max(max(len(r.scores) for r in results), 2)
    grid = np.logspace(math.log10(floor / 2), 0, 200)
    ax.plot(grid, grid, color="grey", linewidth=0.8, linestyle=":", label="chance (TPR = FPR)")
    claims = sorted({(r.epsilon, r.delta) for r in results if r.epsilon is not None})
    for (epsilon, delta), style in zip(claims, ("--", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)))):
        ax.plot(grid, _dp_region(epsilon, delta, grid), color="#555555", linestyle=style, linewidth=0.9,
                label=f"most any (ε = {epsilon_str(epsilon)}, δ = {delta:g})-DP mechanism allows")
    for index, r in enumerate(results):
        fpr, tpr = roc_points(r.scores, r.included)
        claim = "no DP" if r.epsilon is None else f"claimed ε = {epsilon_str(r.epsilon)}"
        ax.step(np.maximum(fpr, floor / 2), np.maximum(tpr, floor / 2), where="post", color=f"C{index}",
                label=f"{label(r)} ({claim}; empirical ε ≥ {lower_str(r.epsilon_lower)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor / 2, 1)
    ax.set_ylim(floor / 2, 1.05)
    ax.set(xlabel="false positive rate (non-member canaries called members)",
           ylabel="true positive rate (member canaries found)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=130))
