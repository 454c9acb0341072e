"""One diagnosis, after the model ran: the decision, its card, the clinic's fields and the history row.

``EdgeClient.diagnose`` (api.py) reads the photo, runs the gate and the model; this module turns
logits into a Diagnosis (edge_client.referral decides) and logs results and refused attempts.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from edge_client.card import ModelCard
from edge_client.errors import PhotoQualityError, UngradableReferral
from edge_client.history import History
from edge_client.referral import ReferralRule, calibrated_probabilities, decide, temperature_of

__all__ = ["Diagnosis", "Visit", "EYES", "ATTEMPT_WINDOW", "grade", "log_refusal"]

EYES = ("left", "right")
ATTEMPT_WINDOW = timedelta(hours=24)  # refused attempts older than this do not count toward N
_MAX_TEXT = 64


@dataclass
class Diagnosis:
    grade: int
    grade_name: str
    probabilities: list[float]
    refer: bool
    advice: str
    confidence: float
    model_version: int
    epsilon: float | None
    delta: float | None
    accountant: str | None
    personal_head: bool
    seconds: float
    quality: dict = field(default_factory=dict)
    history_id: int | None = None
    image_sha256: str = ""
    decision: str = "no_referral"
    p_referable: float = 0.0
    reason: str = ""
    card: ModelCard | None = None
    patient_id: str | None = None
    eye: str | None = None
    operator: str | None = None
    local_time: str = ""

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["card"] = None if self.card is None else {**self.card.to_dict(), "lines": self.card.lines()}
        return d


def _text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    value = value.strip()
    if not value:
        return None
    if len(value) > _MAX_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{name} must be at most {_MAX_TEXT} printable characters, got {value[:80]!r}")
    return value


@dataclass(frozen=True)
class Visit:
    """Who and which eye a photo is of, and who took it, plus both clocks of the moment."""

    patient_id: str | None
    eye: str | None
    operator: str | None
    time: str        # UTC, e.g. 2026-11-30T16:00:00Z
    local_time: str  # ISO 8601 with the device's UTC offset, e.g. 2026-11-30T17:00:00+01:00
    utc: datetime

    @classmethod
    def start(cls, patient_id: str | None = None, eye: str | None = None, operator: str | None = None) -> "Visit":
        """Check the clinic's fields and stamp the time.

        Raises:
            ValueError: eye not in ("left", "right", None); patient_id or operator not short printable text.
        """
        if eye is not None and eye not in EYES:
            raise ValueError(f"eye must be one of {EYES} or None, got {eye!r}")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        return cls(_text("patient_id", patient_id), eye, _text("operator", operator),
                   now.strftime("%Y-%m-%dT%H:%M:%SZ"), now.astimezone().isoformat(timespec="seconds"), now)


def grade(logits: np.ndarray, *, manifest: dict, card: ModelCard, visit: Visit, history: History, data: bytes,
          model_version: int, personal_head: bool, quality: dict, seconds: float,
          photo_path: str | None) -> Diagnosis:
    """Decide on one photo's logits (personal head already applied), log it, return the Diagnosis."""
    rule = ReferralRule.from_manifest(manifest)
    probs = calibrated_probabilities(logits, temperature_of(manifest))
    names = manifest["class_names"]
    d = decide(probs, rule, names)
    privacy = manifest.get("privacy") or {}
    digest = hashlib.sha256(data).hexdigest()
    probabilities = [float(p) for p in probs]
    entry_id = history.add(time=visit.time, local_time=visit.local_time, image_sha256=digest, decision=d.decision,
                           reason=d.reason, refer=d.refer, model_version=model_version, card=card, grade=d.grade,
                           grade_name=names[d.grade], probabilities=probabilities, confidence=d.confidence,
                           p_referable=d.p_referable, patient_id=visit.patient_id, eye=visit.eye,
                           operator=visit.operator, photo_path=photo_path)
    return Diagnosis(d.grade, names[d.grade], probabilities, d.refer, d.advice, d.confidence, model_version,
                     privacy.get("epsilon"), privacy.get("delta"), privacy.get("accountant"), personal_head,
                     seconds, quality, entry_id, digest, d.decision, d.p_referable, d.reason, card,
                     visit.patient_id, visit.eye, visit.operator, visit.local_time)


def log_refusal(exc: PhotoQualityError, *, manifest: dict, card: ModelCard, visit: Visit, history: History,
                data: bytes, model_version: int, photo_path: str | None) -> PhotoQualityError:
    """Log a refused photo; return the error to raise: `exc`, or an UngradableReferral on the Nth
    refusal in a row for this patient's eye (within ATTEMPT_WINDOW). Without a patient id the
    attempts cannot be tied to one eye: nothing is counted (``.attempts`` stays None)."""
    rule = ReferralRule.from_manifest(manifest)
    attempts = None
    if visit.patient_id is not None:
        since = (visit.utc - ATTEMPT_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
        attempts = history.refused_in_a_row(visit.patient_id, visit.eye, since=since) + 1
    out = UngradableReferral(attempts, exc) if attempts is not None and attempts >= rule.ungradable_attempts else exc
    out.attempts = attempts
    decision = "ungradable" if isinstance(out, UngradableReferral) else "refused"
    out.history_id = history.add(
        time=visit.time, local_time=visit.local_time, image_sha256=hashlib.sha256(data).hexdigest(),
        decision=decision, reason=out.hint, refer=decision == "ungradable", model_version=model_version, card=card,
        patient_id=visit.patient_id, eye=visit.eye, operator=visit.operator, refusal=exc.reason,
        photo_path=photo_path)
    return out
