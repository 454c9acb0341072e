"""What a device needs to decide on a patient, chosen at export on held-out data (docs/CLINICAL.md).

* temperature scaling: T minimising the negative log-likelihood of held-out photos' labels;
* the referral threshold on calibrated P(referable): the highest one whose sensitivity on the
  fit half reaches the target (default 0.90); sensitivity and specificity are then measured on the
  OTHER half, with 95 % Wilson lower bounds; the uncertain band is [threshold, threshold + width);
* ECE (top-1 and P(referable)) and reliability diagrams before and after, on the other half;
* feature statistics for the out-of-distribution check, on PUBLIC synthetic fundus photos only.

Held-out data: a labelled folder (``--clinical-data``, APTOS layout; private patients' photos by
default, whose use here is outside ε and says so), else synthetic photos (public, no patient,
but no clinical evidence either: the card then says "not validated").
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from edge_client.fileio import atomic_write, atomic_write_text
from edge_client.ood import FeatureStats
from edge_client.preprocess import PreprocessConfig
from edge_client.referral import calibrated_probabilities
from export import ExportError, calibration, parity
from trainer.metrics import expected_calibration_error

__all__ = ["ClinicalOptions", "check_options", "fit_temperature", "choose_threshold", "sensitivity_specificity",
           "wilson_lower", "referable_ece", "feature_stats", "ood_threshold", "clinical_blocks"]

HELD_OUT_SEED = 11_000_001  # distinct from calibration (7_000_001) and parity (9_000_001) photos
OOD_FIT_SEED = 12_000_001
OOD_CHECK_SEED = 13_000_001
BINS = 10


@dataclasses.dataclass
class ClinicalOptions:
    """`export all` flags for the clinical blocks (see export/cli.py)."""

    data_dir: Path | None = None  # labelled held-out photos (APTOS layout)
    data_public: bool = False      # the folder is public data (no patient's privacy at stake)
    images: int = 300              # synthetic held-out photos when there is no folder
    ood_images: int = 200          # synthetic photos for the feature statistics when the held-out photos are a folder
    ood_false_flag: float = 0.01   # share of public fundus photos the OOD threshold may flag


def check_options(opts: ClinicalOptions) -> None:
    """Fail before minutes of conversion. Raises ExportError naming the flag."""
    if opts.data_dir is not None and not Path(opts.data_dir).is_dir():
        raise ExportError(f"--clinical-data {opts.data_dir}: folder not found")
    if opts.data_public and opts.data_dir is None:
        raise ExportError("--clinical-data-public needs --clinical-data")
    if opts.images < 2 or opts.ood_images < 2:
        raise ExportError("--clinical-images and --ood-images must be >= 2")
    if not 0.0 < opts.ood_false_flag < 0.5:
        raise ExportError(f"--ood-false-flag must be in (0, 0.5), got {opts.ood_false_flag}")


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T > 0 minimising the mean NLL of softmax(logits / T) (bounded search over log T in [-4, 4])."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        return float((np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(y)), y]).mean())

    return float(math.exp(minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded",
                                          options={"xatol": 1e-5}).x))


def choose_threshold(p_ref: np.ndarray, referable: np.ndarray, target: float) -> float:
    """The highest threshold t with sensitivity (share of referable photos with P >= t) >= target.

    Raises:
        ExportError: no referable photo to choose on.
    """
    positives = np.sort(np.asarray(p_ref, np.float64)[np.asarray(referable, bool)])
    if positives.size == 0:
        raise ExportError("the clinical held-out photos hold no referable grade: cannot choose a threshold "
                          "(use more photos, or set one with --referral-threshold)")
    misses = int(math.floor(positives.size * (1.0 - target) + 1e-9))  # positives allowed below t
    return float(positives[min(misses, positives.size - 1)])


def sensitivity_specificity(p_ref, referable, threshold: float) -> dict:
    """Counts and rates of 'refer iff P >= threshold' against the labels (None where undefined)."""
    p, y = np.asarray(p_ref, np.float64), np.asarray(referable, bool)
    tp, fn = int((p[y] >= threshold).sum()), int((p[y] < threshold).sum())
    tn, fp = int((p[~y] < threshold).sum()), int((p[~y] >= threshold).sum())
    return {"n": int(y.size), "positives": tp + fn, "tp": tp, "fn": fn, "tn": tn, "fp": fp,
            "sensitivity": tp / (tp + fn) if tp + fn else None, "specificity": tn / (tn + fp) if tn + fp else None,
            "sensitivity_lower95": wilson_lower(tp, tp + fn), "specificity_lower95": wilson_lower(tn, tn + fp)}


def wilson_lower(k: int, n: int, z: float = 1.96) -> float | None:
    """Lower end of the Wilson score interval of k successes in n (None when n = 0)."""
    if n == 0:
        return None
    p = k / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z * z / n))


def _bins(p: np.ndarray, hit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.clip(np.ceil(p * BINS).astype(np.int64) - 1, 0, BINS - 1)
    count = np.bincount(idx, minlength=BINS)
    return count, np.bincount(idx, weights=hit, minlength=BINS), np.bincount(idx, weights=p, minlength=BINS)


def referable_ece(p_ref: np.ndarray, referable: np.ndarray) -> float:
    """ECE of P(referable) as a binary forecast: sum over bins of share * |observed rate - mean P|."""
    count, hits, conf = _bins(np.asarray(p_ref, np.float64), np.asarray(referable, np.float64))
    return float(np.abs(hits - conf)[count > 0].sum() / max(1, len(p_ref)))


def feature_stats(features: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-feature mean and scale (std, floored at a tenth of the mean std: dead features on public
    photos must not make any activation infinitely far), 6 significant digits."""
    f = np.asarray(features, np.float64)
    std = f.std(axis=0)
    scale = np.maximum(std, max(1e-6, 0.1 * float(std.mean())))
    return [float(f"{v:.6g}") for v in f.mean(axis=0)], [float(f"{v:.6g}") for v in scale]


def ood_threshold(stats: FeatureStats, feature_sets: list[np.ndarray], false_flag: float) -> float:
    """The largest (1 - false_flag) quantile of the distances over every set of public features."""
    return float(f"{max(float(np.quantile(stats.distance(f), 1.0 - false_flag)) for f in feature_sets):.6g}")


def _split(labels: np.ndarray, refer_at: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit and validation halves, each with half the referable and half the other photos."""
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for group in (np.flatnonzero(labels >= refer_at), np.flatnonzero(labels < refer_at)):
        group = rng.permutation(group)
        fit += list(group[0::2])
        val += list(group[1::2])
    return np.sort(np.asarray(fit, np.int64)), np.sort(np.asarray(val, np.int64))


def _held_out(opts: ClinicalOptions, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    if opts.data_dir is not None:
        x, y = calibration.load_folder(opts.data_dir, cfg, need_labels=True)
        kind = "public" if opts.data_public else "private"
        where = (f"{len(y)} labelled photos in {opts.data_dir} ("
                 + ("public data)" if opts.data_public else "private; their use here is outside ε)"))
        return x, y, {"data": kind, "validated": True, "source": where}
    x, y = calibration.synthetic_images(opts.images, cfg, seed=HELD_OUT_SEED)
    return x, y, {"data": "public", "validated": False,
                  "source": f"{opts.images} synthetic photos (public, seed {HELD_OUT_SEED}; no clinical evidence)"}


@dataclasses.dataclass
class ReferralChoice:
    """What `choose_referral` decided on the torch model, and what `finish_clinical` still needs."""

    referral: dict          # the manifest's referral block
    calibration: dict       # the manifest's calibration block
    measured: dict          # sensitivity/specificity on the held-out half not used to fit
    about: dict             # where the held-out photos came from (validated, data, source)
    features: np.ndarray    # their 512-d features (public synthetic ones feed the OOD statistics)
    fit: np.ndarray         # indices of the half used to fit
    val: np.ndarray         # indices of the other half


def choose_referral(module, cfg: PreprocessConfig, opts: ClinicalOptions, policy: dict, *, out: Path) -> ReferralChoice:
    """Temperature and referral threshold, fitted on one half of the held-out photos and measured on
    the other; writes the reliability diagrams into `out`. Runs BEFORE the artifacts are built, so
    the exporters check int8 against the decision the device will make.

    Args:
        module: the torch export view (logits, features). cfg: preprocessing. opts: the flags.
        policy: the referral policy from ``export.manifest.load_policy``. out: the bundle's build folder.

    Raises:
        ExportError: unreadable clinical data, or no referable photo to choose a threshold on.
    """
    refer_at = int(policy["refer_at_grade"])
    x, y, about = _held_out(opts, cfg)
    logits, features = parity.torch_outputs(module, x)
    fit, val = _split(y, refer_at, HELD_OUT_SEED)
    if fit.size == 0 or val.size == 0:
        raise ExportError("the clinical held-out set needs at least 2 photos (one per half)")
    temperature = fit_temperature(logits[fit], y[fit])
    raw, cal = calibrated_probabilities(logits), calibrated_probabilities(logits, temperature)
    referable = y >= refer_at
    p_raw, p_cal = raw[:, refer_at:].sum(axis=1), cal[:, refer_at:].sum(axis=1)
    chosen = policy.get("threshold") is None
    threshold = (choose_threshold(p_cal[fit], referable[fit], policy["target_sensitivity"]) if chosen
                 else float(policy["threshold"]))
    # not rounded: rounding up could move a referable photo of the fit half below the threshold
    upper = min(1.0, threshold + policy["uncertain_width"])
    measured = sensitivity_specificity(p_cal[val], referable[val], threshold)
    ece = {"top1_before": expected_calibration_error(y[val], raw[val], bins=BINS),
           "top1_after": expected_calibration_error(y[val], cal[val], bins=BINS),
           "referable_before": referable_ece(p_raw[val], referable[val]),
           "referable_after": referable_ece(p_cal[val], referable[val])}
    for name, probs, p in (("before", raw, p_raw), ("after", cal, p_cal)):
        _reliability_png(out / f"reliability_{name}.png", probs[val], y[val], p[val], referable[val],
                         title=f"{name} temperature scaling" + (f" (T = {temperature:.3f})" if name == "after" else ""))
    fit_figures = sensitivity_specificity(p_cal[fit], referable[fit], threshold)
    referral = {"refer_at_grade": refer_at, "min_confidence": policy["min_confidence"], "threshold": threshold,
                "uncertain_upper": upper, "ungradable_attempts": int(policy["ungradable_attempts"]),
                "target_sensitivity": policy["target_sensitivity"],
                "validation": {"validated": about["validated"], "data": about["data"],
                               "source": f"{measured['n']} of {about['source']}, the half not used to fit",
                               "threshold_chosen": chosen, **measured,
                               "fit": {k: fit_figures[k] for k in ("n", "positives", "sensitivity", "specificity")}}}
    calib = {"method": "temperature", "temperature": temperature, "data": about["data"],
             "outside_epsilon": about["data"] == "private", "n": int(fit.size),
             "source": f"{fit.size} of {about['source']}", **{f"ece_{k}": v for k, v in ece.items()}}
    return ReferralChoice(referral, calib, measured, about, features, fit, val)


def finish_clinical(choice: ReferralChoice, module, cfg: PreprocessConfig, opts: ClinicalOptions, *, out: Path,
                    artifact_outputs: dict[str, tuple[np.ndarray, np.ndarray]], parity_labels: np.ndarray | None,
                    parity_public: bool, public_images: dict[str, np.ndarray] | None = None,
                    log=print) -> tuple[dict, dict]:
    """The out-of-distribution statistics and each artifact's figures at the chosen threshold;
    writes clinical.md and clinical.json into `out`.

    Args:
        choice: from `choose_referral`. artifact_outputs: {artifact: (logits, features)} on the parity
        photos, with parity_labels (None without labels); parity_public: those photos are synthetic.
        public_images: {name: preprocessed synthetic photos the export already rendered} (e.g. the int8
        calibration photos): with the parity photos, they set the OOD threshold (no new photos drawn).

    Returns:
        (ood block, report summary).
    """
    referral, calib, fit, val, features = choice.referral, choice.calibration, choice.fit, choice.val, choice.features
    refer_at, threshold, temperature = referral["refer_at_grade"], referral["threshold"], calib["temperature"]
    checks = {name: parity.torch_outputs(module, images)[1] for name, images in (public_images or {}).items()}
    if parity_public:
        checks.update({f"{name} on the synthetic parity photos": f for name, (_, f) in artifact_outputs.items()})
    if opts.data_dir is None:  # synthetic held-out photos are public: statistics on one half, checked on the other
        checks[f"the other {val.size} synthetic held-out photos"] = features[val]
        ood, ood_summary = _ood_block(features[fit], f"{fit.size} of {choice.about['source']}", opts, checks)
    else:  # never a folder's photos (they may be private): fresh synthetic ones
        fresh, _ = calibration.synthetic_images(opts.ood_images, cfg, seed=OOD_FIT_SEED)
        if not checks:
            more, _ = calibration.synthetic_images(opts.ood_images, cfg, seed=OOD_CHECK_SEED)
            checks[f"{opts.ood_images} more synthetic photos (seed {OOD_CHECK_SEED})"] = \
                parity.torch_outputs(module, more)[1]
        ood, ood_summary = _ood_block(parity.torch_outputs(module, fresh)[1],
                                      f"{opts.ood_images} synthetic photos (public, seed {OOD_FIT_SEED})", opts, checks)
    devices = {name: {**sensitivity_specificity(
        calibrated_probabilities(lg, temperature)[:, refer_at:].sum(axis=1), parity_labels >= refer_at, threshold),
        "ood_flag_rate": float((FeatureStats.from_block(ood).distance(ft) > ood["threshold"]).mean())}
        for name, (lg, ft) in artifact_outputs.items()} if parity_labels is not None else {}
    summary = {"referral": referral, "calibration": calib, "ood": ood_summary, "artifacts_on_parity_photos": devices}
    atomic_write_text(out / "clinical.md", render_markdown(summary))
    atomic_write_text(out / "clinical.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    measured = choice.measured
    log(f"clinical: T = {temperature:.3f}, threshold P(referable) >= {threshold:.3f} "
        f"(sensitivity {_fmt(measured['sensitivity'])}, specificity {_fmt(measured['specificity'])} on "
        f"{measured['n']} held-out photos), OOD threshold {ood['threshold']:.3f}")
    return ood, summary


def clinical_blocks(module, cfg: PreprocessConfig, opts: ClinicalOptions, policy: dict, *, out: Path,
                    artifact_outputs: dict[str, tuple[np.ndarray, np.ndarray]], parity_labels: np.ndarray | None,
                    parity_public: bool, public_images: dict[str, np.ndarray] | None = None,
                    log=print) -> tuple[dict, dict, dict, dict]:
    """`choose_referral` then `finish_clinical` in one call (for a caller with its outputs ready).

    Returns:
        (referral block, calibration block, ood block, report summary).
    """
    choice = choose_referral(module, cfg, opts, policy, out=out)
    ood, summary = finish_clinical(choice, module, cfg, opts, out=out, artifact_outputs=artifact_outputs,
                                   parity_labels=parity_labels, parity_public=parity_public,
                                   public_images=public_images, log=log)
    return choice.referral, choice.calibration, ood, summary


def _ood_block(features: np.ndarray, about: str, opts: ClinicalOptions,
               checks: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Statistics of public photos' `features`; threshold from the other public feature sets."""
    mean, scale = feature_stats(features)
    stats = FeatureStats(mean, scale, 1.0)
    threshold = ood_threshold(stats, list(checks.values()), opts.ood_false_flag)
    source = f"{about}; threshold from: {'; '.join(checks)}"
    block = {"method": "rms standardised feature distance", "public": True, "source": source,
             "false_flag_target": opts.ood_false_flag, "threshold": threshold, "mean": mean, "scale": scale}
    summary = {"threshold": threshold, "source": source, "false_flag_target": opts.ood_false_flag,
               "flag_rates": {name: float((stats.distance(f) > threshold).mean()) for name, f in checks.items()}}
    return block, summary


def _fmt(v, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def render_markdown(s: dict) -> str:
    """clinical.md: the referral threshold, calibration and OOD figures, for people."""
    r, c, o, v = s["referral"], s["calibration"], s["ood"], s["referral"]["validation"]
    status = "VALIDATED" if v["validated"] else "NOT VALIDATED (no real patients' photos)"
    lines = ["# Clinical figures chosen at export", "",
             f"- refer when calibrated P(grade >= {r['refer_at_grade']}) >= **{r['threshold']:.4f}** "
             f"({'chosen for target sensitivity ' + format(r['target_sensitivity'], '.2f') if v['threshold_chosen'] else 'set by --referral-threshold'}); "
             f"uncertain band [{r['threshold']:.4f}, {r['uncertain_upper']:.4f}) headlines \"Uncertain: refer\"",
             f"- {status}: "
             f"sensitivity {_fmt(v['sensitivity'])} (95 % lower {_fmt(v['sensitivity_lower95'])}, "
             f"{v['tp']}/{v['positives']}), specificity {_fmt(v['specificity'])} (95 % lower "
             f"{_fmt(v['specificity_lower95'])}, {v['tn']}/{v['n'] - v['positives']}) on {v['source']}",
             f"- on the fit half ({v['fit']['n']} photos): sensitivity {_fmt(v['fit']['sensitivity'])}, "
             f"specificity {_fmt(v['fit']['specificity'])}",
             f"- temperature T = {c['temperature']:.4f} fitted on {c['source']} ({c['data']} data"
             + ("; outside ε" if c["outside_epsilon"] else "") + ")", "",
             "| ECE (10 bins, validation half) | before | after |", "|---|---:|---:|",
             f"| top-1 confidence | {c['ece_top1_before']:.4f} | {c['ece_top1_after']:.4f} |",
             f"| P(referable) | {c['ece_referable_before']:.4f} | {c['ece_referable_after']:.4f} |", "",
             "![before](reliability_before.png) ![after](reliability_after.png)", "",
             f"- out-of-distribution check: threshold {o['threshold']:.4f}, statistics from {o['source']}; "
             f"target: flag {o['false_flag_target']:.1%} of public fundus photos; flagged: "
             + ", ".join(f"{rate:.1%} of {name}" for name, rate in o["flag_rates"].items())]
    if s["artifacts_on_parity_photos"]:
        lines += ["", "| artifact (parity photos, calibrated) | sensitivity | specificity | OOD flagged |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {name} | {_fmt(a['sensitivity'])} | {_fmt(a['specificity'])} | {a['ood_flag_rate']:.1%} |"
                  for name, a in s["artifacts_on_parity_photos"].items()]
    return "\n".join(lines) + "\n"


def _reliability_png(path: Path, probs, labels, p_ref, referable, *, title: str) -> Path:
    """Two reliability diagrams (top-1 confidence; P(referable)) with the diagonal and bin counts."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4))
    panels = ((probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float), "top-1 confidence", "accuracy"),
              (p_ref, referable.astype(float), "P(referable)", "share referable"))
    centres = (np.arange(BINS) + 0.5) / BINS
    for i, (p, hit, xlabel, ylabel) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        count, hits, _ = _bins(np.asarray(p, np.float64), hit)
        rate = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
        ax.bar(centres, rate, width=1 / BINS, edgecolor="black", alpha=0.7)
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        for c, n, r in zip(centres, count, rate):
            if n:
                ax.text(c, min(0.95, r + 0.03), str(int(n)), ha="center", fontsize=7)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=xlabel, ylabel=ylabel)
    fig.suptitle(f"Reliability, {title}")
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))
