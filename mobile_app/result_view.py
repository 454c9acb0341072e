"""A diagnosis as the result screen shows it: the referral decision first, then the model card.

edge_client decides (issue 14: `Diagnosis.decision`, `.p_referable`, `.reason`, `.card`); this
module only chooses words (translation keys) and colours, and fills in, for a client that does
not carry those fields yet, the decision from `Diagnosis.refer` and the card from the installed
model's manifest: never a validation claim the model does not make. Pure Python, no Kivy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from edge_client.privacy_figures import guarantee_text

DECISIONS = ("refer", "uncertain_refer", "no_referral", "ungradable_refer")
DECISION_LEVEL = {"refer": "error", "ungradable_refer": "error", "uncertain_refer": "warn", "no_referral": "ok"}


@dataclass(frozen=True)
class Line:
    """One line of text: a translation key with its values; `warn` shows it in the warning colour."""

    key: str
    values: dict = field(default_factory=dict)
    warn: bool = False


@dataclass(frozen=True)
class ResultView:
    decision: str                 # one of DECISIONS
    level: str                    # "error" | "warn" | "ok" (the banner's colour)
    reason: str                   # edge_client's reason for the decision ("" when none)
    grade: int
    p_referable: float | None
    threshold: float | None       # the model's referral threshold on p_referable (from its card)
    refer_at_grade: int           # "referable" means this grade or worse
    card: list[Line]
    workflow: list[Line]          # patient, eye, operator, local time (when the client records them)


def decision_of(diagnosis) -> str:
    """The client's decision, or (older clients) refer / no referral from `Diagnosis.refer`."""
    decision = getattr(diagnosis, "decision", None)
    if decision in DECISIONS:
        return decision
    return "refer" if diagnosis.refer else "no_referral"


def _floor_percent(x: float) -> int:
    """A validation figure shown as a percentage, rounded DOWN: never claim more than measured."""
    return int(math.floor(float(x) * 100 + 1e-9))


def privacy_line(privacy: dict | None) -> Line:
    """ε with δ and the accountant (rounded up by edge_client), or the honest exceptions."""
    privacy = privacy or {}
    if privacy.get("seeded") or privacy.get("test_build"):
        return Line("card.test_build", warn=True)
    eps = privacy.get("epsilon")
    if eps is None or math.isinf(float(eps)):
        return Line("card.no_dp", warn=True)
    return Line("card.privacy", {"text": guarantee_text(privacy)})


def card_lines(card, *, version: int, created: str, privacy: dict | None) -> list[Line]:
    """The model card's lines: version and date, validation, privacy, calibration.

    Args:
        card: the client's ModelCard (issue 14) or None. version, created, privacy: the
            installed manifest's, used when `card` is None.
    """
    if card is None:
        return [Line("card.model", {"version": version, "date": str(created)[:10] or "?"}),
                Line("card.not_validated", warn=True), privacy_line(privacy),
                Line("card.not_calibrated", warn=True)]
    lines = [Line("card.model", {"version": getattr(card, "version", version),
                                 "date": str(getattr(card, "created", "") or created)[:10] or "?"})]
    sens, spec = getattr(card, "sensitivity", None), getattr(card, "specificity", None)
    if getattr(card, "validated", False) and sens is not None and spec is not None:
        lines.append(Line("card.validated", {"sensitivity": _floor_percent(sens), "specificity": _floor_percent(spec),
                                             "source": getattr(card, "validation_source", "") or "?"}))
    else:
        lines.append(Line("card.not_validated", warn=True))
    block = {"epsilon": getattr(card, "epsilon", None), "delta": getattr(card, "delta", None),
             "accountant": getattr(card, "accountant", None), "test_build": getattr(card, "test_build", False)}
    lines.append(privacy_line(block))
    if getattr(card, "calibrated", False):
        t = getattr(card, "temperature", None)
        lines.append(Line("card.calibrated", {"temperature": f"{t:.2f}" if t is not None else "?"}))
    else:
        lines.append(Line("card.not_calibrated", warn=True))
    return lines


def workflow_lines(diagnosis) -> list[Line]:
    """Patient id, eye, operator and local time, for the ones the client recorded."""
    lines = []
    if getattr(diagnosis, "patient_id", None):
        lines.append(Line("result.patient", {"patient": diagnosis.patient_id}))
    if getattr(diagnosis, "eye", None) in ("left", "right"):
        lines.append(Line(f"result.eye_{diagnosis.eye}"))
    if getattr(diagnosis, "operator", None):
        lines.append(Line("result.operator", {"operator": diagnosis.operator}))
    if getattr(diagnosis, "local_time", None):
        lines.append(Line("result.time", {"time": str(diagnosis.local_time).replace("T", " ")}))
    return lines


def view(diagnosis, *, created: str = "", privacy: dict | None = None) -> ResultView:
    """Everything the result screen shows about one diagnosis.

    Args:
        diagnosis: edge_client's Diagnosis. created, privacy: the installed manifest's
            (only used when the diagnosis carries no card).
    """
    decision = decision_of(diagnosis)
    p_ref = getattr(diagnosis, "p_referable", None)
    card = getattr(diagnosis, "card", None)
    threshold = getattr(card, "threshold", None)
    return ResultView(decision=decision, level=DECISION_LEVEL[decision], reason=str(getattr(diagnosis, "reason", "") or ""),
                      grade=int(diagnosis.grade), p_referable=float(p_ref) if p_ref is not None else None,
                      threshold=float(threshold) if threshold is not None else None,
                      refer_at_grade=int(getattr(card, "refer_at_grade", 2) or 2),
                      card=card_lines(card, version=diagnosis.model_version,
                                      created=created, privacy=privacy),
                      workflow=workflow_lines(diagnosis))


__all__ = ["DECISIONS", "DECISION_LEVEL", "Line", "ResultView", "card_lines", "decision_of", "privacy_line", "view",
           "workflow_lines"]
