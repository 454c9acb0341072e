"""The model card every result carries: which model, how far it was validated, how its confidence
was calibrated, and its privacy guarantee (read from the signed manifest, never computed here)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from edge_client.privacy_figures import guarantee_text
from edge_client.referral import ReferralRule, percent, temperature_of

__all__ = ["ModelCard", "SCREENING_NOTE"]

SCREENING_NOTE = "Screening aid, not a diagnosis: an eye specialist decides."


def _opt_float(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class ModelCard:
    """What a result was produced by, for the screen, the history and the CSV export.

    validated is True only when the manifest says the threshold's sensitivity and specificity were
    measured on held-out photos of real patients (export's --clinical-data); figures measured on
    synthetic photos are still shown, marked "not validated".
    """

    version: int
    created: str
    validated: bool
    sensitivity: float | None
    specificity: float | None
    threshold: float | None
    validation_source: str | None
    epsilon: float | None
    delta: float | None
    accountant: str | None
    test_build: bool
    calibrated: bool
    temperature: float | None
    privacy_text: str
    refer_at_grade: int = 2
    calibration_source: str | None = None
    ood_check: bool = False
    calibration_data: str | None = None  # "public", or "private" (held-out patients' photos, outside ε)

    @classmethod
    def from_manifest(cls, manifest: dict) -> "ModelCard":
        """The card of a (verified) manifest.

        Raises:
            ValueError: a malformed referral or calibration block (naming the field).
        """
        rule = ReferralRule.from_manifest(manifest)
        validation = (manifest.get("referral") or {}).get("validation") or {}
        calibration = manifest.get("calibration") or {}
        privacy = manifest.get("privacy") or {}
        temperature = temperature_of(manifest)
        return cls(version=int(manifest["model_version"]), created=str(manifest.get("created", "")),
                   validated=validation.get("validated") is True,
                   sensitivity=_opt_float(validation.get("sensitivity")),
                   specificity=_opt_float(validation.get("specificity")),
                   threshold=rule.threshold, validation_source=validation.get("source"),
                   epsilon=_opt_float(privacy.get("epsilon")), delta=_opt_float(privacy.get("delta")),
                   accountant=privacy.get("accountant"),
                   test_build=bool(privacy.get("test_build") or privacy.get("seeded")),
                   calibrated=temperature is not None, temperature=temperature,
                   privacy_text=guarantee_text(privacy), refer_at_grade=rule.refer_at_grade,
                   calibration_source=calibration.get("source") if temperature is not None else None,
                   ood_check=bool(manifest.get("ood")),
                   calibration_data=calibration.get("data") if temperature is not None else None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        """Rebuild a stored card (history rows); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def validation_line(self) -> str:
        """One line on the referral threshold's sensitivity and specificity."""
        t = "the default threshold" if self.threshold is None else f"P(referable) >= {percent(self.threshold)}"
        figures = ("" if self.sensitivity is None or self.specificity is None else
                   f"sensitivity {percent(self.sensitivity)}, specificity {percent(self.specificity)} at {t}")
        if self.validated:
            return f"Validated: {figures} ({self.validation_source})"
        if figures:
            return f"NOT VALIDATED on real patients' photos: {figures}, measured on {self.validation_source}"
        return f"NOT VALIDATED: no held-out sensitivity or specificity for this model ({t} is a default)"

    def lines(self) -> list[str]:
        """The card as English lines, for the CLI and the CSV export."""
        calibration = (f"Confidence calibrated: temperature {self.temperature:.2f}, fitted on "
                       f"{self.calibration_source or 'held-out photos'}" if self.calibrated
                       else "Confidence NOT calibrated: raw model probabilities")
        return [f"Model version {self.version} ({self.created})",
                f"Refers on P(grade >= {self.refer_at_grade}); " + self.validation_line(),
                calibration,
                f"Privacy: {self.privacy_text}",
                "Out-of-distribution check: " + ("on (features vs public fundus photos)" if self.ood_check
                                                 else "off (this model carries no feature statistics)"),
                SCREENING_NOTE]
