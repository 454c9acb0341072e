"""Parity of each exported artifact with the torch model: agreement, errors, quality, speed.

Writes ``report.json`` (machine-readable) and ``report.md`` (a table for people).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from trainer.metrics import quadratic_weighted_kappa


def torch_outputs(module: torch.nn.Module, images: np.ndarray, *, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and features (N, 512) of the export view on preprocessed images."""
    logits, features = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            out = module(torch.from_numpy(images[start:start + batch]))
            logits.append(out[0].numpy())
            features.append(out[1].numpy())
    return np.concatenate(logits), np.concatenate(features)


def runner_outputs(runner, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run an artifact's runner image by image (every artifact has batch 1)."""
    pairs = [runner.run_one(image) for image in images]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def latency_ms(run_one, image: np.ndarray, *, runs: int, warmup: int = 5) -> float:
    """Mean milliseconds per image over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        run_one(image)
    start = time.perf_counter()
    for _ in range(runs):
        run_one(image)
    return (time.perf_counter() - start) / runs * 1000.0


def quality(logits: np.ndarray, labels: np.ndarray | None, num_classes: int) -> dict:
    """Accuracy and quadratic weighted kappa of argmax predictions (None without labels)."""
    if labels is None:
        return {"accuracy": None, "kappa": None}
    pred = logits.argmax(1)
    return {"accuracy": float((pred == labels).mean()),
            "kappa": float(quadratic_weighted_kappa(labels, pred, num_classes))}


def compare(name: str, logits: np.ndarray, features: np.ndarray, reference: tuple[np.ndarray, np.ndarray],
            labels: np.ndarray | None, head: tuple[np.ndarray, np.ndarray]) -> dict:
    """Parity figures of one artifact's outputs against torch's.

    Args:
        name: artifact file name.
        logits, features: the artifact's outputs on the test images.
        reference: torch's (logits, features) on the same images.
        labels: grades of the test images, or None.
        head: (W (C, 512), b (C,)) of the torch head, to check ``features`` reproduces ``logits``.

    Returns:
        dict of figures (see report.md's columns).
    """
    ref_logits, ref_features = reference
    weight, bias = head
    through_head = features @ weight.T + bias
    return {
        "artifact": name,
        "images": int(len(logits)),
        "top1_agreement": float((logits.argmax(1) == ref_logits.argmax(1)).mean()),
        "max_abs_dlogit": float(np.abs(logits - ref_logits).max()),
        "max_abs_dfeature": float(np.abs(features - ref_features).max()),
        # how far W f + b (f = the artifact's features) is from the artifact's own logits
        "head_max_abs_diff": float(np.abs(through_head - logits).max()),
        **quality(logits, labels, ref_logits.shape[1]),
    }


def write_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (a temporary build folder)."""
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(render_markdown(report))
    return json_path, md_path


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def render_markdown(report: dict) -> str:
    """The parity report as Markdown: settings, torch reference, one row per artifact."""
    ref = report["torch"]
    lines = [
        "# Export parity report", "",
        f"- checkpoint: `{report['checkpoint']}` (mode {report['mode']}, model version {report['model_version']})",
        f"- test images: {report['test_images']['count']} ({report['test_images']['source']}), "
        f"input {report['input_size']} px",
        f"- calibration images: {report['calibration']['count']} ({report['calibration']['source']}); "
        "calibration statistics are not covered by ε",
        f"- machine: {report['machine']}; latency = mean ms per image, 1 thread, "
        f"{report['latency_runs']} runs after warm-up",
        f"- torch fp32 reference: accuracy {_fmt(ref['accuracy'], '.3f')}, kappa {_fmt(ref['kappa'], '.3f')}, "
        f"latency {_fmt(ref['latency_ms'], '.2f')} ms", "",
        "| artifact | runtime | precision | size (MB) | top-1 agreement | max abs Δlogit | "
        "accuracy | kappa | latency (ms) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["artifacts"]:
        lines.append(
            f"| {row['artifact']} | {row['runtime']} | {row['precision']} | {row['size'] / 1e6:.3f} | "
            f"{row['top1_agreement']:.4f} | {row['max_abs_dlogit']:.4f} | {_fmt(row['accuracy'], '.3f')} | "
            f"{_fmt(row['kappa'], '.3f')} | {_fmt(row['latency_ms'], '.2f')} |")
    lines += ["", "Sizes are bytes / 10^6; a `.mlpackage` counts all its files (its zip is listed in the "
              "manifest)."]
    lines += [f"- {note}" for note in report.get("notes", [])]
    return "\n".join(lines) + "\n"


def machine_name() -> str:
    """CPU model (from /proc/cpuinfo where there is one) and core count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}"
