"""The model card of a version built from device updates: what ε covers, per device, and what the hub saw."""
from __future__ import annotations

import math

__all__ = ["device_privacy", "device_card"]


def _up(x: float) -> str:
    """ε rounded up to 2 decimals (never down)."""
    return f"{math.ceil(x * 100 - 1e-9) / 100:.2f}"


def device_privacy(base: dict, updates: list[dict], *, base_version: int) -> dict:
    """The checkpoint ``privacy`` field of the new version.

    ``epsilon``/``delta`` are the largest of the base model's and every device's, so the one
    number a device shows is a guarantee for everyone the model learned from; the split is in
    ``device_updates`` and in the privacy model text.
    """
    eps_dev = max(u["epsilon"] for u in updates)
    delta_dev = max(u["delta"] for u in updates)
    base_eps, base_delta = base.get("epsilon"), base.get("delta")
    text = (f"device updates: each of {len(updates)} devices ran DP-SGD on its own photo set (unit: one patient's "
            f"photos on that device; epsilon <= {_up(eps_dev)} per device, delta = {delta_dev:g}, rdp, max over "
            f"devices); the hub saw each device's noised head change (no secure aggregation). Base model "
            f"v{base_version}: " + (f"{base.get('privacy_model') or 'patient-level'} (epsilon = {base_eps}, "
                                    f"delta = {base_delta}, {base.get('accountant')})" if base_eps is not None
                                    else "no differential privacy"))
    return {"epsilon": max(eps_dev, base_eps if base_eps is not None else 0.0),
            "delta": max(delta_dev, base_delta if base_delta is not None else 0.0),
            "accountant": "rdp", "privacy_model": text,
            "noise_multiplier": None, "sample_rate": None, "steps": 0, "clipping_norm": None,
            "device_updates": {"count": len(updates), "epsilon_max": eps_dev, "delta_max": delta_dev,
                               "base_version": base_version, "base_privacy": dict(base)}}


def device_card(*, version: int, base_version: int, base: dict, updates: list[dict], min_updates: int) -> str:
    """Markdown model card for ``version`` (base + the mean of ``updates``' head changes)."""
    eps_dev = max(u["epsilon"] for u in updates)
    delta_dev = max(u["delta"] for u in updates)
    rows = [f"| {i + 1} | {u['token_id']} | {_up(u['epsilon'])} | {u['delta']:g} | {u['steps']} | "
            f"{u['noise_multiplier']:.3f} | {u['sample_rate']:.3f} | {u['clipping_norm']:g} |"
            for i, u in enumerate(updates)]
    base_line = (f"(ε = {_up(base['epsilon'])}, δ = {base.get('delta'):g}, {base.get('accountant')}): "
                 f"{base.get('privacy_model') or 'patient-level'}" if base.get("epsilon") is not None
                 else "no differential privacy (ε = ∞)")
    out = [f"# Model card: version {version} (base version {base_version} + {len(updates)} device updates)", "",
           "A screening aid for diabetic retinopathy. **Not a diagnosis**: every result must be confirmed by a "
           "qualified eye-care professional.", "",
           "## How it was made", "",
           f"Version {base_version}'s weights, with its head (the 512 -> 5 layer) moved by the mean of "
           f"{len(updates)} head changes that clinic devices trained on their own graded photos "
           f"(the hub aggregates once {min_updates} updates for the current version have arrived). "
           "Everything else is unchanged. Test metrics were not re-measured for this version.", "",
           "## Privacy guarantee of the device updates", "",
           f"**Per device: (ε ≤ {_up(eps_dev)}, δ = {delta_dev:g}) by the RDP accountant** "
           "(the maximum over the contributing devices; ε rounded up, never down).", "",
           "- what is protected: each patient whose graded photos are on a contributing device. Neighbouring "
           "datasets add or remove one patient (all of that patient's photos) from one device's photo set; each "
           "device clipped the summed gradient of each patient's photos to C and added Gaussian noise itself "
           "(DP-SGD with Poisson sampling, a fixed number of steps).",
           "- ε per device is that device's own accountant: it composes every round that touched any of the "
           "photos in the set (personal rounds included) and refuses rounds past the set's budget.",
           "- what the hub sees: **each device's noised head change individually** (no secure aggregation for "
           "device updates), with its public constants (steps, σ, q, C, learning rate, ε, δ), the base version, "
           "the upload time and the device's token. It never sees photos, labels, features, per-patient "
           "gradients or realised batch sizes. The size of a device's photo set is not sent, but can be roughly "
           "estimated from the update's noise level.",
           "- not protected: a device as a whole (its update reveals aggregate facts about its photo set, under "
           "the per-patient guarantee above); a patient graded on several devices is protected by the "
           "composition of those devices' guarantees.", "",
           "| update | device token id | ε | δ | steps | σ | q | C |", "|---|---|---|---|---|---|---|---|", *rows, "",
           "## Privacy of the base model", "", f"Version {base_version}: {base_line}. Averaging device updates is "
           "post-processing of it, so that guarantee still holds for the hospitals' patients.", "",
           "Outside ε: hyper-parameters, int8 calibration statistics (synthetic images by default) and metrics.", ""]
    return "\n".join(out)
