"""The privacy block and model card of a version built from device updates.

What ε covers: a patient on a contributing device is protected by that device's own DP-SGD
accountant (ε_dev, δ_dev: the largest over the devices). A patient of the base model's hospitals
is protected by the base model's (ε_base, δ_base). A patient in BOTH sets (a hospital's patient
whose photos are also on a clinic tablet) is protected by their composition, by basic
composition at most (ε_base + ε_dev, δ_base + δ_dev): that sum is the version's headline figure,
never the max. Every ε shown goes through ``edge_client.privacy_figures`` (rounded up). No
per-device σ or q is published (they hint at a device's photo count); "devices" counts distinct
device tokens.
"""
from __future__ import annotations

from edge_client.privacy_figures import TEST_BUILD_TEXT, epsilon_str, guarantee_text
from hub.registry import is_seeded

__all__ = ["device_privacy", "device_card"]

ACCOUNTANT = "basic-composition"


def _delta(value) -> str:
    return "—" if value is None else f"{float(value):g}"


def device_privacy(base: dict, updates: list[dict], *, base_version: int) -> dict:
    """The checkpoint ``privacy`` field of the new version.

    Args:
        base: the base checkpoint's privacy block (``.get`` only: older checkpoints lack keys).
        updates: one dict per update used: token_id, epsilon, delta.
        base_version: the version the updates were trained on.

    Returns:
        epsilon/delta = base + device (basic composition), None when the base has no DP;
        ``device_updates`` holds the parts; ``seeded``/``test_build`` carried from the base.
    """
    devices = len({u["token_id"] for u in updates})
    eps_dev = max(float(u["epsilon"]) for u in updates)
    delta_dev = max(float(u["delta"]) for u in updates)
    base_eps, base_delta = base.get("epsilon"), base.get("delta")
    private_base = base_eps is not None and base_delta is not None
    test_build = is_seeded(base)
    device_line = (f"each of {devices} devices ran DP-SGD on its own photo set (unit: one patient's photos on that "
                   f"device): epsilon <= {epsilon_str(eps_dev)}, delta = {delta_dev:g} (rdp, largest over the "
                   f"devices); the hub saw each device's noised head change (no secure aggregation)")
    if private_base:
        text = (f"a patient in both a hospital set and a device set: epsilon <= {epsilon_str(base_eps + eps_dev)}, "
                f"delta <= {base_delta + delta_dev:g} (basic composition of the two); hospital patients (base model "
                f"v{base_version}, {base.get('accountant')}): epsilon = {epsilon_str(base_eps)}, delta = "
                f"{base_delta:g}; device patients: {device_line}")
    else:
        text = f"base model v{base_version} has no differential privacy; device patients: {device_line}"
    if test_build:
        text = f"{TEST_BUILD_TEXT} (the base model's noise was seeded); " + text
    return {"epsilon": base_eps + eps_dev if private_base else None,
            "delta": base_delta + delta_dev if private_base else None,
            "accountant": ACCOUNTANT if private_base else None, "privacy_model": text,
            "seeded": bool(base.get("seeded")), "test_build": test_build,
            "noise_multiplier": None, "sample_rate": None, "steps": 0, "clipping_norm": None,
            "device_updates": {"devices": devices, "updates": len(updates), "epsilon_max": eps_dev,
                               "delta_max": delta_dev, "base_version": base_version,
                               "base_privacy": {k: base.get(k) for k in ("epsilon", "delta", "accountant",
                                                                          "privacy_model", "seeded", "test_build")}}}


def device_card(*, version: int, base_version: int, base: dict, updates: list[dict], min_updates: int,
                robust_mean: str = "norm-clipped", validation: dict | None = None) -> str:
    """Markdown model card for ``version`` (base + the robust mean of ``updates``' head changes)."""
    privacy = device_privacy(base, updates, base_version=base_version)
    parts = privacy["device_updates"]
    devices = parts["devices"]
    if privacy["test_build"]:
        headline = f"**{TEST_BUILD_TEXT}**: the base model was trained with seeded noise."
    elif privacy["epsilon"] is not None:
        headline = (f"**A patient in both a hospital set and a device set: {guarantee_text(privacy)}**, by basic "
                    f"composition of the base model's guarantee and the devices' (their sum, not their maximum).")
    else:
        headline = "**No differential privacy for the base model's patients (ε = ∞).**"
    base_line = (guarantee_text(base) if base.get("epsilon") is not None or is_seeded(base)
                 else "no differential privacy (ε = ∞)")
    checked = ("Held-out validation on the hub's own labelled set (never seen by any device): "
               f"accuracy {validation['base']['accuracy']:.3f} (version {base_version}) -> "
               f"{validation['candidate']['accuracy']:.3f} (this version), {validation['candidate']['n']} photos."
               if validation else "Test metrics were not re-measured for this version.")
    out = [f"# Model card: version {version} (base version {base_version} + updates from {devices} devices)", "",
           "A screening aid for diabetic retinopathy. **Not a diagnosis**: every result must be confirmed by a "
           "qualified eye-care professional.", "",
           "## How it was made", "",
           f"Version {base_version}'s weights, with its head (the 512 -> 5 layer) moved by a robust mean "
           f"({robust_mean}) of the head changes that {devices} clinic devices (distinct device tokens; one update "
           f"each) trained on their own graded photos. The hub builds a candidate once {min_updates} devices have "
           f"sent an update for the current version, and an operator approved it before it was signed. Everything "
           f"else is unchanged. {checked}", "",
           "## Privacy", "", headline, "",
           f"- hospital patients (base version {base_version}): {base_line}. Averaging device updates is "
           "post-processing of it, so it still holds for them.",
           f"- device patients: (ε ≤ {epsilon_str(parts['epsilon_max'])}, δ = {parts['delta_max']:g}) by each "
           "device's RDP accountant, the largest over the contributing devices (ε rounded up, never down). "
           "Neighbouring datasets add or remove one patient (all of that patient's photos) from one device's set; "
           "each device clipped each patient's summed gradient to C and added Gaussian noise itself.",
           f"- a patient in both: at most ε = {epsilon_str(privacy['epsilon']) if privacy['epsilon'] is not None else '∞'}, "
           f"δ = {_delta(privacy['delta'])} (basic composition: ε and δ add). A patient graded on several devices is "
           "protected by the composition of those devices' guarantees.",
           "- what the hub sees: each device's noised head change individually (no secure aggregation for device "
           "updates), the update's public constants, the base version, the upload time and the device's token. "
           "Never photos, labels, features, per-patient gradients or batch sizes. This card publishes no "
           "per-device constants.",
           "- not protected: a device as a whole (its update reveals aggregate facts about its photo set, under the "
           "per-patient guarantee above).", "",
           "Outside ε: hyper-parameters, int8 calibration statistics (synthetic images by default), the hub's "
           "held-out validation, and metrics.", ""]
    return "\n".join(out)
