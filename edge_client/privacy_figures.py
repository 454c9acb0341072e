"""How every part of the project shows a privacy figure: ε rounded UP, always with δ and the
accountant, and a seeded (test) build never shown as a guarantee.

One implementation for the trainer, export, the hub, the CLI and the app, so no screen can
round ε in the user's favour. No torch, no Kivy: it runs on the phone.
"""
from __future__ import annotations

import math

__all__ = ["round_up", "epsilon_str", "guarantee_text", "TEST_BUILD_TEXT"]

TEST_BUILD_TEXT = "no DP guarantee: test build"


def round_up(x: float, decimals: int = 2) -> float:
    """Round up to `decimals` places, never down: reporting less ε than spent is a lie.

    The result is the smallest k / 10**decimals (as a float) that is >= x, so float noise such as
    1.1 * 100 = 110.00000000000001 does not turn 1.1 into 1.11, while 1.0000000001 becomes 1.01.

    Args:
        x: the value (finite or +/-inf).
        decimals: number of decimal places, >= 0.

    Returns:
        The rounded-up value; inf stays inf.

    Raises:
        ValueError: if x is NaN or decimals is not a non-negative integer.
    """
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals must be a non-negative integer, got {decimals!r}")
    x = float(x)
    if math.isnan(x):
        raise ValueError("x is NaN: cannot round a privacy figure that does not exist")
    if math.isinf(x):
        return x
    scale = 10 ** decimals
    k = math.floor(x * scale) - 1  # start just below, then step up to the first k/scale >= x
    while k / scale < x:
        k += 1
    return k / scale


def epsilon_str(epsilon: float | None, decimals: int = 2) -> str:
    """ε as shown to people: rounded up to `decimals` places; "∞" when unbounded or absent."""
    if epsilon is None or math.isinf(float(epsilon)):
        return "∞"
    return f"{round_up(epsilon, decimals):.{decimals}f}"


def guarantee_text(privacy: dict | None) -> str:
    """One line for a privacy block ({epsilon, delta, accountant, seeded?, test_build?}).

    A seeded or test build never reads as a guarantee, whatever ε it carries.
    """
    privacy = privacy or {}
    if privacy.get("seeded") or privacy.get("test_build"):
        return TEST_BUILD_TEXT
    epsilon = privacy.get("epsilon")
    if epsilon is None or math.isinf(float(epsilon)):
        return "no differential privacy (ε = ∞)"
    accountant = str(privacy.get("accountant") or "?").upper()
    return f"ε = {epsilon_str(epsilon)}, δ = {float(privacy.get('delta')):g} ({accountant})"
