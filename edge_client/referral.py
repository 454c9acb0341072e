"""The screening decision: refer on the calibrated probability of referable DR (pure functions).

P(referable) = sum of the calibrated probabilities of grades >= refer_at_grade (default 2,
moderate or worse). The manifest's "referral" block carries the threshold chosen at export for
a target sensitivity, and an uncertain band above it:

    P < threshold                       -> "no_referral"
    threshold <= P < uncertain_upper    -> "uncertain_refer"  (headline "Uncertain: refer", no grade)
    P >= uncertain_upper                -> "refer"

The grade (argmax) is secondary: it never decides a referral on its own. The manifest's
"calibration" block carries the temperature T fitted at export; probabilities are softmax(z / T).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_RULE", "DECISIONS", "ReferralRule", "Decision", "calibrated_probabilities",
           "p_referable", "decide", "temperature_of", "percent"]

DECISIONS = ("refer", "no_referral", "uncertain_refer")
# For a manifest without a chosen threshold (models exported before issue 14): not validated.
DEFAULT_RULE = {"refer_at_grade": 2, "threshold": 0.2, "uncertain_upper": 0.5, "min_confidence": 0.6,
                "ungradable_attempts": 3}


def _number(block: dict, key: str, lo: float, hi: float, where: str) -> float:
    value = block[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ValueError(f"{where}.{key} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ReferralRule:
    """The rule a manifest carries (defaults: DEFAULT_RULE)."""

    refer_at_grade: int = 2
    threshold: float = 0.2
    uncertain_upper: float = 0.5
    min_confidence: float = 0.6
    ungradable_attempts: int = 3
    chosen: bool = False  # True when the threshold was chosen at export (not the default)

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ReferralRule":
        """Read and check the manifest's "referral" block.

        Raises:
            ValueError: naming the bad field and its allowed range.
        """
        block = manifest.get("referral") or {}
        if not isinstance(block, dict):
            raise ValueError("referral must be an object")
        merged = {**DEFAULT_RULE, **block}
        classes = len(manifest.get("class_names") or range(5))
        grade = merged["refer_at_grade"]
        if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= classes - 1:
            raise ValueError(f"referral.refer_at_grade must be an integer in 1..{classes - 1}, got {grade!r}")
        attempts = merged["ungradable_attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
            raise ValueError(f"referral.ungradable_attempts must be an integer in 1..20, got {attempts!r}")
        threshold = _number(merged, "threshold", 0.0, 1.0, "referral")
        upper = _number(merged, "uncertain_upper", 0.0, 1.0, "referral")
        if upper < threshold:
            raise ValueError(f"referral.uncertain_upper ({upper}) must be >= referral.threshold ({threshold})")
        return cls(grade, threshold, upper, _number(merged, "min_confidence", 0.0, 1.0, "referral"),
                   attempts, chosen="threshold" in block)


@dataclass(frozen=True)
class Decision:
    decision: str       # one of DECISIONS
    p_referable: float  # calibrated P(grade >= refer_at_grade)
    grade: int          # most likely grade (secondary)
    confidence: float   # its calibrated probability
    reason: str         # one English line: the evidence for the decision
    advice: str         # one English line for the health worker

    @property
    def refer(self) -> bool:
        return self.decision != "no_referral"


def temperature_of(manifest: dict) -> float | None:
    """The manifest's calibration temperature, or None when the model is not calibrated.

    Raises:
        ValueError: a calibration block whose temperature is not a finite number in (0, 100].
    """
    block = manifest.get("calibration")
    if not block:
        return None
    if not isinstance(block, dict) or "temperature" not in block:
        raise ValueError("calibration must be an object with a temperature")
    t = block["temperature"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= 100:
        raise ValueError(f"calibration.temperature must be a number in (0, 100], got {t!r}")
    return float(t)


def calibrated_probabilities(logits, temperature: float | None = None) -> np.ndarray:
    """softmax(logits / T) in float64 (T = 1 when None).

    Args:
        logits: (C,) or (N, C) logits. temperature: the manifest's calibration temperature.

    Returns:
        Probabilities of the same shape, rows summing to 1.
    """
    z = np.asarray(logits, dtype=np.float64) / (1.0 if temperature is None else float(temperature))
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def p_referable(probabilities, refer_at_grade: int = 2) -> float:
    """P(grade >= refer_at_grade) of one probability vector."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 1 or not 1 <= refer_at_grade < probs.size:
        raise ValueError(f"need a 1-D probability vector and 1 <= refer_at_grade < {probs.size}")
    return float(min(1.0, max(0.0, probs[refer_at_grade:].sum())))


def percent(p: float, other: float | None = None) -> str:
    """'39 %'; with more decimals when whole percents would make p and `other` look equal."""
    for decimals in (0, 1, 2, 3):
        text = f"{100 * p:.{decimals}f}"
        if other is None or p == other or text != f"{100 * other:.{decimals}f}":
            return f"{text} %"
    return f"{100 * p:.4f} %"


def decide(probabilities, rule: ReferralRule, class_names: list[str]) -> Decision:
    """The screening decision for one calibrated probability vector.

    Args:
        probabilities: (C,) calibrated probabilities. rule: the manifest's rule.
        class_names: grade names (from the manifest).

    Returns:
        The Decision, with its reason and advice.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    p = p_referable(probs, rule.refer_at_grade)
    grade = int(probs.argmax())
    confidence = float(probs[grade])
    t, upper = rule.threshold, rule.uncertain_upper
    name = class_names[grade]
    unsure = " (uncertain)" if confidence < rule.min_confidence else ""
    secondary = f"most likely grade: {name}, {percent(confidence)}{unsure}"
    referable = f"grade {rule.refer_at_grade} or worse"
    if p < t:
        return Decision("no_referral", p, grade, confidence, f"P(referable) {percent(p, t)} < threshold {percent(t, p)}",
                        f"No referral needed now: the probability of referable DR ({referable}) is "
                        f"{percent(p, t)}, below {percent(t, p)}; {secondary}. Screen again as scheduled.")
    if p < upper:
        return Decision("uncertain_refer", p, grade, confidence,
                        f"P(referable) {percent(p, t)} >= threshold {percent(t, p)} but < {percent(upper, p)}: uncertain",
                        f"Uncertain: refer to an eye specialist. The model cannot rule out referable DR "
                        f"({referable}): probability {percent(p, t)}.")
    return Decision("refer", p, grade, confidence, f"P(referable) {percent(p, t)} >= threshold {percent(t, p)}",
                    f"Refer to an eye specialist: referable DR ({referable}) likely, probability "
                    f"{percent(p, t)}; {secondary}.")
