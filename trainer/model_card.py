"""The model card (RUN/MODEL_CARD.md): what the model is for, what ε covers and what it does not.

Built from the checkpoint dict (docs/CONTRACTS.md "Checkpoint"). ε is never printed without its δ
and its accountant, and is rounded up, never down.
"""
from __future__ import annotations

import re
from pathlib import Path

from edge_client.fileio import atomic_write
from edge_client.privacy_figures import TEST_BUILD_TEXT, epsilon_str

_SCALARS = ("accuracy", "kappa", "referable_sensitivity", "referable_specificity", "referable_auc",
            "ece", "majority_rate", "n")
_EXTRA_USED = {"hospitals", "rounds", "colluders", "synthetic", "dataset", "weights"}


def _fmt(x, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def _first(sources, *keys):
    """The first non-None value of any key, looking in each source in turn (extra before config)."""
    for source in sources:
        for key in keys:
            if source.get(key) is not None:
                return source[key]
    return None


def _metrics_table(metrics: dict, class_names: list[str]) -> list[str]:
    val, test = metrics.get("val") or {}, metrics.get("test") or {}
    lines = ["| metric | validation | test |", "|---|---|---|"]
    for key in _SCALARS:
        if key in val or key in test:
            spec = "d" if key == "n" else ".3f"
            lines.append(f"| {key} | {_fmt(val.get(key), spec)} | {_fmt(test.get(key), spec)} |")
    val_recall, test_recall = val.get("per_class_recall") or [], test.get("per_class_recall") or []
    for grade, name in enumerate(class_names):
        if grade < len(val_recall) or grade < len(test_recall):
            v = val_recall[grade] if grade < len(val_recall) else None
            t = test_recall[grade] if grade < len(test_recall) else None
            lines.append(f"| recall, grade {grade} ({name}) | {_fmt(v)} | {_fmt(t)} |")
    return lines


def _privacy_section(mode: str, privacy: dict, colluders) -> list[str]:
    epsilon = privacy.get("epsilon")
    if privacy.get("seeded") or privacy.get("test_build"):
        return [f"**{TEST_BUILD_TEXT.upper()}.** The DP noise and sampling were drawn from a known seed "
                "(`--noise-seed`, a test-only flag): anyone with the config can regenerate the noise, so the "
                f"accountant's figure (ε = {epsilon_str(epsilon)}) protects nobody. Never publish this model."]
    if epsilon is None:
        return ["No differential privacy: **ε = ∞**. The weights may reveal whether a patient "
                "was in the training set."]
    if privacy.get("delta") is None or not privacy.get("accountant"):
        raise ValueError("checkpoint['privacy'] has an epsilon but no delta/accountant: "
                         "ε means nothing without both")
    out = [f"**(ε = {epsilon_str(epsilon)}, δ = {privacy['delta']:g}) by the "
           f"{privacy['accountant']} accountant** (ε rounded up, never down)."]
    if mode == "fl-parallel-dp":
        out.append("ε is the maximum over the hospitals' accountants (each hospital's patients "
                   "are protected by that hospital's own DP-SGD).")
    dp = ", ".join(f"{k} = {privacy[k]}" for k in ("noise_multiplier", "sample_rate", "steps",
                                                  "clipping_norm") if privacy.get(k) is not None)
    if dp:
        out.append(f"DP-SGD: {dp}.")
    out += ["", f"Privacy model: {privacy.get('privacy_model') or 'not stated'}.", "",
            "- unit of privacy: the patient (neighbouring datasets add or remove one patient)"]
    if mode.startswith("central"):
        out.append("- one data holder trains; ε covers everything released from training")
    else:
        out += ["- server: honest but curious; it learns only the securely aggregated sum of the "
                "hospitals' noised updates",
                f"- colluding hospitals accounted for: t = {_fmt(colluders, '')}"]
    return out


def write_model_card(path, checkpoint: dict, *, extra: dict | None = None) -> Path:
    """Write a markdown model card for a trained checkpoint.

    Args:
        path: where to write the card (e.g. RUN/MODEL_CARD.md); written atomically.
        checkpoint: the checkpoint dict (mode, privacy, metrics, config, round, preprocess, ...).
        extra: facts the config may lack, looked up before the config: hospitals, rounds,
            colluders, synthetic (bool), dataset, weights; any other key is listed under "Notes".

    Returns:
        The path written.

    Raises:
        ValueError: naming `checkpoint` if it lacks mode/privacy, or has ε without δ/accountant.
    """
    if not isinstance(checkpoint, dict) or "mode" not in checkpoint or "privacy" not in checkpoint:
        raise ValueError("checkpoint must be a checkpoint dict with at least 'mode' and 'privacy'")
    extra = dict(extra or {})
    config, privacy = checkpoint.get("config") or {}, checkpoint.get("privacy") or {}
    sources, mode = (extra, config), str(checkpoint["mode"])
    names = list(checkpoint.get("class_names") or [])
    kept = _fmt(checkpoint.get("round"), "")
    colluders = _first(sources, "colluders")
    match = re.search(r"t\s*=\s*(\d+)", str(privacy.get("privacy_model") or ""))
    if colluders is None and match:
        colluders = match.group(1)

    out = [f"# Model card: diabetic-retinopathy grader "
           f"({checkpoint.get('arch', 'squeezenet1_1-dr')}, mode `{mode}`)", "",
           f"Created {checkpoint.get('created', 'unknown')}.", "", "## Intended use", "",
           "A screening aid: it grades a fundus photo ("
           + ", ".join(f"{i} {n}" for i, n in enumerate(names)) + ") and flags referable DR.", "",
           "**This is not a diagnosis.** Every result must be confirmed by a qualified eye-care "
           "professional; do not use it to rule out disease on its own.", "",
           "## Training data", "", f"- mode: `{mode}`",
           f"- hospitals: {_fmt(_first(sources, 'hospitals', 'num_hospitals'), '')}",
           f"- rounds run: {_fmt(_first(sources, 'rounds', 'num_rounds'), '')}; "
           f"round kept: {kept} (chosen on validation)"]
    dataset = _first(sources, "dataset", "data")
    if dataset is not None:
        out.append(f"- dataset: `{dataset}`")
    out += ["", "## Privacy", ""] + _privacy_section(mode, privacy, colluders)
    out += ["", "Outside ε (not protected by it, and released anyway): the round kept was chosen on a "
            "validation split of the PRIVATE data; hyper-parameters tuned on that split; the int8 "
            "calibration statistics of any export; the test metrics below.", "",
            f"## Metrics (round {kept}, chosen on validation; test never used to choose)", ""]
    out += _metrics_table(checkpoint.get("metrics") or {}, names)
    out += ["", "## Limitations", ""]
    if _first(sources, "synthetic"):
        out.append("- **Trained on synthetic images**: these metrics say nothing about real photos.")
    warm = privacy.get("warm_start") or {}
    weights = _first(sources, "weights", "init_weights")
    if warm.get("note"):
        out.append(f"- {warm['note']}.")
    else:
        out.append(f"- initialised from the local weights file `{weights}`" if weights else
                   "- no pretraining: trained from random initialisation (no ImageNet weights).")
    out += ["- not validated prospectively, nor on other cameras and populations; poor-quality "
            "photos degrade it; the int8 exports may differ slightly from these float metrics.", "",
            "## Preprocessing", "", "| parameter | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in (checkpoint.get("preprocess") or {}).items()]
    notes = [f"- {k}: {v}" for k, v in extra.items() if k not in _EXTRA_USED]
    if notes:
        out += ["", "## Notes", ""] + notes
    text = "\n".join(out) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
