"""What the device says about its privacy figures, in one place for the CLI and the app.

Every ε goes through ``edge_client.privacy_figures`` (rounded up, with δ and the accountant; a
seeded round never reads as a guarantee). The device's ε covers the device's own rounds only: a
patient who is also in the hospitals' training set of the installed model is protected by the
composition of both guarantees (basic composition: ε1 + ε2, δ1 + δ2), never by the larger one.
"""
from __future__ import annotations

import math

from edge_client.privacy_figures import TEST_BUILD_TEXT, epsilon_str, guarantee_text, round_up

__all__ = ["patient_guarantee", "remaining_str", "scope_lines", "composed_figures", "SCOPE_TEXT"]

SCOPE_TEXT = ("this ε covers this device's own training rounds only (personal and federated), "
              "for each patient in these photos")


def patient_guarantee(epsilon: float, delta: float, *, seeded: bool = False) -> str:
    """The device accountant's figure as shown: "ε = 4.99, δ = 1e-05 (RDP)", or the test-build text."""
    return guarantee_text({"epsilon": epsilon, "delta": delta, "accountant": "rdp", "seeded": seeded})


def remaining_str(budget: float, spent: float) -> str:
    """Budget left, rounded DOWN to 2 decimals (showing more budget than there is would flatter ε)."""
    left = max(0.0, float(budget) - float(spent))
    return f"{max(0.0, -round_up(-left)):.2f}"


def _model_figures(model_privacy: dict | None) -> tuple[float, float] | None:
    """(ε, δ) of the installed model when it states a real guarantee, else None."""
    p = model_privacy or {}
    if p.get("seeded") or p.get("test_build") or p.get("epsilon") is None or p.get("delta") is None:
        return None
    if math.isinf(float(p["epsilon"])):
        return None
    return float(p["epsilon"]), float(p["delta"])


def composed_figures(model_privacy: dict | None, *, epsilon: float, delta: float,
                     seeded: bool = False) -> tuple[str, str] | None:
    """(ε, δ) as shown for a patient in both the model's training set and this device's rounds:
    ε1 + ε2 rounded up, δ1 + δ2. None when either side states no guarantee."""
    figures = _model_figures(model_privacy)
    if seeded or figures is None:
        return None
    eps, dlt = figures
    return epsilon_str(epsilon + eps), f"{delta + dlt:g}"


def scope_lines(model_privacy: dict | None, *, epsilon: float, delta: float, seeded: bool = False,
                model_version: int | None = None) -> list[str]:
    """What the device's ε covers, and what protects a patient also in the model's training set.

    Args:
        model_privacy: the installed model's ``privacy`` block (epsilon, delta, accountant,
            seeded?, test_build?), or None. epsilon, delta: the device's figure for the patient.
        seeded: the device's figure comes from a seeded (test) round. model_version: for the text.

    Returns:
        Lines to show, in order.
    """
    if seeded:
        return [f"{TEST_BUILD_TEXT}: a round with a test seed (--seed) protects no one"]
    model = f"model version {model_version}" if model_version is not None else "the installed model"
    lines = [SCOPE_TEXT]
    figures = _model_figures(model_privacy)
    if figures is None:
        lines.append(f"{model} states no DP guarantee of its own ({guarantee_text(model_privacy)}): a patient who "
                     f"was also in its training set has no guarantee from it")
        return lines
    both_epsilon, both_delta = composed_figures(model_privacy, epsilon=epsilon, delta=delta)
    lines.append(f"a patient who was also in the hospitals' training set of {model} "
                 f"({guarantee_text(model_privacy)}) is protected by both together (basic composition): "
                 f"ε = {both_epsilon}, δ = {both_delta}")
    return lines
