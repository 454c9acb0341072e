"""Photo gate rates per source: false acceptances of real non-fundus photos, false refusals of
fundus photos, for the image gate and the model-side out-of-distribution check. Prints a table.

    python benchmarks/bench_gate.py                      # trains a small 48 px model and exports it first
    python benchmarks/bench_gate.py --dist DIST          # a real `export all` bundle (its OOD statistics)
    python benchmarks/bench_gate.py --fundus-dir PHOTOS  # add a clinic's own fundus photos as a source

Every photo goes the device's way: PNG bytes -> load_image -> check_quality -> preprocess -> the
bundle's int8 artifact (LiteRT, else ONNX Runtime) -> check_features. Real photos: what scikit-image
ships in its wheel (tests/helpers/real_photos.py); synthetic fundus photos: `trainer synth`.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def _bundle(work: Path) -> Path:
    """Train the test suite's small model (48 px, synthetic photos) and export it (onnx, tflite)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("export_fixtures", ROOT / "tests" / "export" / "conftest.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)  # the export tests' small model recipe (train_tiny)

    from edge_client.preprocess import PreprocessConfig
    from trainer.checkpoint import save_checkpoint
    from trainer.data.synth import generate_dataset

    torch.set_num_threads(1)
    data = generate_dataset(work / "train", 300, size=fixtures.SIZE, seed=11, class_probs=(0.2,) * 5)
    save_checkpoint(work / "model.pt", fixtures.train_tiny(data), mode="dopamine", privacy=fixtures.PRIVACY,
                    preprocess=PreprocessConfig(image_size=fixtures.SIZE).to_dict(), metrics={},
                    config={"hospitals": 3}, round_kept=1)
    subprocess.run([sys.executable, "-m", "export", "all", "--checkpoint", str(work / "model.pt"), "--out",
                    str(work / "dist"), "--formats", "onnx,tflite", "--latency-runs", "1", "--min-agreement", "0.9"],
                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True)
    return work / "dist"


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _sources(work: Path, args) -> list[tuple[str, str, bool, list[bytes]]]:
    """(category, source, is_fundus, encoded photos)."""
    from tests.helpers.real_photos import non_fundus_sources, red_free_crop, retina_variants

    from trainer.data.synth import generate_dataset

    out = [(cat, src, False, [_png(p) for p in photos]) for src, cat, photos in non_fundus_sources()]
    out.append(("fundus, red-free crop (must refuse)", "skimage microaneurysms", False, [_png(red_free_crop())]))
    out.append(("fundus, real", "skimage retina, 19 capture variants", True,
                [_png(img) for _, img in retina_variants()]))
    for size in args.synth_sizes:
        folder = generate_dataset(work / f"synth{size}", args.synth, size=size, seed=size)
        out.append(("fundus, synthetic", f"trainer synth {size} px", True,
                    [p.read_bytes() for p in sorted((folder / "train_images").glob("*.png"))]))
    for label, folder, fundus in (("fundus, clinic", args.fundus_dir, True), ("other, clinic", args.other_dir, False)):
        if folder is not None:
            files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
            out.append((label, str(folder), fundus, [p.read_bytes() for p in files]))
    return out


def _gate(dist: Path):
    """The device's checks for one photo: the image gate, then each artifact's features vs the
    manifest's public statistics (int8 artifacts clip large activations, so each is reported)."""
    from edge_client.errors import PhotoQualityError
    from edge_client.ood import check_features, stats_from_manifest
    from edge_client.preprocess import PreprocessConfig, load_image, preprocess_image
    from edge_client.quality import check_quality
    from edge_client.runtimes import available_runtimes

    manifest = json.loads((dist / "manifest.json").read_text())
    cfg = PreprocessConfig.from_dict(manifest["preprocess"])
    stats = stats_from_manifest(manifest)
    runtimes = {}
    for art in manifest["artifacts"]:
        cls = next((r for r in available_runtimes() if r.artifact_runtime == art["runtime"]), None)
        if cls is not None:
            runtimes[art["name"]] = cls(dist / art["name"], art)

    def run(data: bytes) -> tuple[str | None, dict[str, bool]]:
        img = load_image(data, max_pixels=cfg.max_pixels)
        try:
            check_quality(np.asarray(img), cfg, manifest.get("quality"))
            image_reason = None
        except PhotoQualityError as exc:
            image_reason = exc.reason
        x = preprocess_image(img, cfg)[None]
        flagged = {}
        for name, runtime in runtimes.items():
            try:
                check_features(runtime.run(x)[1], stats)
                flagged[name] = False
            except PhotoQualityError:
                flagged[name] = True
        return image_reason, flagged

    return run, list(runtimes)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dist", type=Path, help="an `export all` bundle (default: build the small test model's)")
    p.add_argument("--synth", type=int, default=100, help="synthetic fundus photos per size (default 100)")
    p.add_argument("--synth-sizes", type=int, nargs="+", default=[128, 512])
    p.add_argument("--fundus-dir", type=Path, help="a folder of real fundus photos to add as a source")
    p.add_argument("--other-dir", type=Path, help="a folder of non-fundus photos to add as a source")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_gate_"))
    dist = args.dist or _bundle(work)
    from edge_client.runtimes import select_runtime

    run, artifacts = _gate(dist)
    device = select_runtime(json.loads((dist / "manifest.json").read_text())["artifacts"])[1]["name"]
    rows, totals = [], {}
    start, count = time.perf_counter(), 0
    for category, source, fundus, photos in _sources(work, args):
        verdicts = [run(data) for data in photos]
        count += len(photos)
        image_ok = [r is None for r, _ in verdicts]
        flags = {a: sum(f[a] for _, f in verdicts) for a in artifacts}
        both = sum(ok and not f[device] for ok, (_, f) in zip(image_ok, verdicts))
        reasons = collections.Counter(r for r, _ in verdicts if r)
        rows.append((category, source, len(photos), sum(image_ok), flags, both,
                     ", ".join(f"{k} {v}" for k, v in reasons.most_common(3)) or "-"))
        t = totals.setdefault("fundus (should pass)" if fundus else "not fundus (should be refused)",
                              {"n": 0, "image_ok": 0, "both": 0, **{a: 0 for a in artifacts}})
        t["n"] += len(photos)
        t["image_ok"] += sum(image_ok)
        t["both"] += both
        for a in artifacts:
            t[a] += flags[a]
    seconds = time.perf_counter() - start
    print(f"bundle {dist}; end to end = image gate + OOD check on {device} (what a device runs); load: {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs; {seconds / max(count, 1) * 1000:.0f} ms a photo (decode, gate, "
          f"{len(artifacts)} models)\n")
    ood_cols = " | ".join(f"OOD flags: {a}" for a in artifacts)
    print(f"| category | source | photos | image gate accepts | {ood_cols} | accepted end to end | image gate refusals |")
    print("|---|---|---:|---:|" + "---:|" * len(artifacts) + "---:|---|")
    for category, source, n, image_ok, flags, both, reasons in rows:
        cells = " | ".join(str(flags[a]) for a in artifacts)
        print(f"| {category} | {source} | {n} | {image_ok} | {cells} | {both} | {reasons} |")
    print(f"\n| photos | n | image gate wrong | {ood_cols} | end to end wrong |")
    print("|---|---:|---:|" + "---:|" * len(artifacts) + "---:|")
    for name, t in totals.items():
        n, refused = t["n"], "refused" in name
        wrong_image = t["image_ok"] if refused else n - t["image_ok"]
        wrong_both = t["both"] if refused else n - t["both"]
        cells = " | ".join(f"{t[a]} ({t[a] / n:.1%})" for a in artifacts)
        print(f"| {name} | {n} | {wrong_image} ({wrong_image / n:.1%}) | {cells} | {wrong_both} ({wrong_both / n:.1%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
