"""`export all`: checkpoint -> artifacts, parity report and signed manifest, written atomically.

Everything is built in a temporary folder next to DIST (same file system) and renamed into
place at the end, so DIST is either the complete previous bundle or the complete new one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge_client.preprocess import PreprocessConfig
from edge_client.privacy_figures import guarantee_text
from export import ExportError, calibration, chatter, clinical, manifest, parity, signing
from trainer.checkpoint import CheckpointError, load_checkpoint
from trainer.model import LogitsAndFeatures

FORMATS = ("onnx", "tflite", "tflite-fp32", "coreml")


@dataclasses.dataclass
class ExportOptions:
    """What `python -m export all` was asked to do (one place, typed; see cli.py for the flags)."""

    checkpoint: Path
    out: Path
    formats: tuple[str, ...] = ("onnx", "tflite", "coreml")
    key: Path | None = None
    model_version: int = 1
    calibration_dir: Path | None = None
    calibration_images: int = 100
    test_dir: Path | None = None
    test_images: int = 200
    calibration_method: str = "minmax"
    min_agreement: float = 0.98
    force: bool = False
    allow_seeded: bool = False          # export a seeded (test-only) checkpoint, marked test_build
    overwrite: bool = False
    latency_runs: int = 20
    policy_toml: Path | None = None
    policy_overrides: dict | None = None
    author: str = "Dopamine project"
    license: str = "Research use only; not a certified medical device"
    clinical_opts: clinical.ClinicalOptions = dataclasses.field(default_factory=clinical.ClinicalOptions)


def _check_options(opts: ExportOptions) -> None:
    unknown = sorted(set(opts.formats) - set(FORMATS))
    if unknown or not opts.formats:
        raise ExportError(f"--formats: unknown {unknown or 'empty list'}; choose from {', '.join(FORMATS)}")
    if not 0.0 <= opts.min_agreement <= 1.0:
        raise ExportError(f"--min-agreement must be in [0, 1], got {opts.min_agreement}")
    if opts.test_images < 1 or opts.calibration_images < 1 or opts.latency_runs < 1:
        raise ExportError("--test-images, --calibration-images and --latency-runs must be >= 1")
    out = opts.out
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not opts.overwrite:
        raise ExportError(f"{out}: folder is not empty; pass --overwrite to replace it")
    if opts.key is not None and out.resolve() in opts.key.resolve().parents:
        raise ExportError(f"{opts.key}: the private key must not live inside the output folder {out}")


def _make_build_dir(out: Path) -> Path:
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=parent))
    except OSError as exc:
        raise ExportError(f"{out}: cannot write the output folder ({exc.strerror}: {exc.filename})") from exc
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(build, 0o777 & ~umask)  # mkdtemp makes 0700; DIST is meant to be published
    return build


def _swap_into_place(build: Path, out: Path) -> None:
    """Rename the finished build to DIST; an old DIST is moved aside first, then deleted."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.absolute().parent))
        os.replace(out, old / out.name)
    os.replace(build, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build_artifacts(fmt: str, module, size: int, build: Path, calib: np.ndarray, opts: ExportOptions,
                     ckpt: dict, rule: dict) -> list[dict]:
    """Export one format; returns a list of {path, entry-args, runner, report extras} dicts."""
    if fmt == "onnx":
        from export import onnx_export

        fp32 = onnx_export.export_fp32(module, size, build / "model_fp32.onnx")
        int8 = onnx_export.quantize_int8(fp32, build / "model_int8.onnx", calib, method=opts.calibration_method,
                                         rule=rule)
        return [{"path": p, "fmt": "onnx", "runtime": "onnxruntime", "precision": prec,
                 "runner": onnx_export.OnnxRunner(p), "tensors": onnx_export.tensor_specs(p),
                 "extra": {"activations": "int8" if prec == "int8" and onnx_export.int8_activations(p) else "float32"}}
                for p, prec in ((fp32, "fp32"), (int8, "int8"))]
    if fmt in ("tflite", "tflite-fp32"):
        from export import tflite_export

        if fmt == "tflite":
            path = tflite_export.export_int8(module, size, build / "model_int8.tflite", calib, rule=rule)
            precision = "int8"
        else:
            path, precision = tflite_export.export_fp32(module, size, build / "model_fp32.tflite"), "fp32"
        runner = tflite_export.TFLiteRunner(path)
        return [{"path": path, "fmt": "tflite", "runtime": "litert", "precision": precision,
                 "runner": runner, "tensors": runner.tensor_specs(),
                 "extra": {"activations": "int8" if runner.int8_activations else "float32"}}]
    from export import coreml_export, mil_numpy

    privacy = manifest.privacy_block(ckpt, allow_seeded=opts.allow_seeded)
    meta = {"author": opts.author, "license": opts.license, "version": str(opts.model_version),
            "description": f"Diabetic-retinopathy grade ({len(ckpt['class_names'])} classes) from a fundus "
                           f"photo; SqueezeNet 1.1 trained in mode {ckpt['mode']}; "
                           f"{guarantee_text(privacy)}",
            "epsilon": privacy["epsilon"], "delta": privacy["delta"], "accountant": privacy["accountant"],
            "privacy_model": privacy["privacy_model"], "training_mode": ckpt["mode"],
            "preprocess": json.dumps(ckpt["preprocess"])}
    package = coreml_export.export_mlpackage(module, size, build / "model_int8.mlpackage", metadata=meta,
                                             class_names=list(ckpt["class_names"]), calibration=calib)
    zipped = coreml_export.zip_package(package, build / "model_int8.mlpackage.zip")
    info = coreml_export.describe(package)
    return [{"path": zipped, "fmt": "mlpackage", "runtime": "coreml", "precision": "int8",
             "runner": mil_numpy.CoreMLRunner(package), "size": info["size"], "latency": False,
             "tensors": {"inputs": [{**t, "layout": "NCHW"} for t in info["inputs"]], "outputs": info["outputs"]},
             "extra": {"activations": "float32",
                       "verified_by": "numpy evaluation of the stored ML program (no Core ML runtime on Linux)",
                       "spec_type": info["spec_type"], "ops": info["ops"], "metadata": info["metadata"]}}]


def _images(opts: ExportOptions, cfg: PreprocessConfig) -> tuple[tuple, tuple, dict, dict]:
    if opts.calibration_dir is not None:
        calib, _ = calibration.load_folder(opts.calibration_dir, cfg, limit=opts.calibration_images)
        calib_src = {"count": len(calib), "source": f"folder {opts.calibration_dir}"}
    else:
        calib, _ = calibration.synthetic_images(opts.calibration_images, cfg, seed=calibration.CALIBRATION_SEED)
        calib_src = {"count": len(calib), "source": f"synthetic, seed {calibration.CALIBRATION_SEED}"}
    if opts.test_dir is not None:
        test = calibration.load_folder(opts.test_dir, cfg, limit=opts.test_images, need_labels=True)
        test_src = {"count": len(test[0]), "source": f"folder {opts.test_dir}"}
    else:
        test = calibration.synthetic_images(opts.test_images, cfg, seed=calibration.PARITY_SEED)
        test_src = {"count": len(test[0]), "source": f"synthetic, seed {calibration.PARITY_SEED}"}
    return calib, test, calib_src, test_src


def export_all(opts: ExportOptions, *, log=print) -> Path:
    """Run the whole export; see the module docstring.

    Args:
        opts: the options (paths, formats, thresholds).
        log: progress printer (one line per step).

    Returns:
        The output folder, complete.

    Raises:
        ExportError: bad input, or an int8 artifact below ``min_agreement`` (unless forced);
            nothing is left in ``opts.out`` (a previous bundle there stays untouched).
    """
    _check_options(opts)
    try:
        model, ckpt = load_checkpoint(opts.checkpoint)
    except CheckpointError as exc:
        raise ExportError(str(exc)) from exc
    try:
        cfg = PreprocessConfig.from_dict(dict(ckpt["preprocess"]))
    except ValueError as exc:
        raise ExportError(f"{opts.checkpoint}: bad preprocess field ({exc})") from exc
    quality, referral = manifest.load_policy(opts.policy_toml, overrides=opts.policy_overrides)
    clinical.check_options(opts.clinical_opts)
    manifest.privacy_block(ckpt, allow_seeded=opts.allow_seeded)  # fail early: no ε, or seeded noise
    key = opts.key if opts.key is not None else signing.dev_private_key()
    signing.load_private_key(key)  # a bad key fails before minutes of conversion
    calib, (test_x, test_y), calib_src, test_src = _images(opts, cfg)
    log(f"images: {calib_src['count']} calibration ({calib_src['source']}), {test_src['count']} test "
        f"({test_src['source']}), {cfg.image_size} px")

    torch.set_num_threads(1)  # latencies are per image on one core
    module = LogitsAndFeatures(model).eval()
    reference = parity.torch_outputs(module, test_x)
    head = (model.classifier[1].weight.detach().numpy().reshape(model.num_classes, -1),
            model.classifier[1].bias.detach().numpy())
    torch_row = {**parity.quality(reference[0], test_y, model.num_classes),
                 "latency_ms": parity.latency_ms(lambda x: module(torch.from_numpy(x[None])), test_x[0],
                                                 runs=opts.latency_runs)}
    build = _make_build_dir(opts.out)
    try:
        # The referral threshold and temperature first: every int8 artifact is then built and checked
        # against the decision the device will act on (calibrated P(referable) >= the threshold).
        choice = clinical.choose_referral(module, cfg, opts.clinical_opts, referral, out=build)
        rule = parity.referral_rule(choice.referral, choice.calibration)
        entries, rows, outputs, failures = [], [], {}, []
        for fmt in opts.formats:
            for art in _build_artifacts(fmt, module, cfg.image_size, build, calib, opts, ckpt, rule):
                logits, features = parity.runner_outputs(art["runner"], test_x)
                outputs[art["path"].name] = (logits, features)
                row = parity.compare(art["path"].name, logits, features, reference, test_y, head, rule=rule)
                row.update(runtime=art["runtime"], precision=art["precision"],
                           size=art.get("size", art["path"].stat().st_size), **art.get("extra", {}))
                row["latency_ms"] = (parity.latency_ms(art["runner"].run_one, test_x[0], runs=opts.latency_runs)
                                     if art.get("latency", True) else None)
                rows.append(row)
                entry = manifest.artifact_entry(art["path"], fmt=art["fmt"], runtime=art["runtime"],
                                                precision=art["precision"], tensors=art["tensors"])
                if art["precision"] == "int8":  # what a device runs: int8 or float activations
                    entry["quantization"] = f"int8 weights, {row['activations']} activations"
                entries.append(entry)
                log(parity.summary_line(row))  # the terminal's one line per artifact
                if min(row["top1_agreement"], row["referable_agreement"]) < opts.min_agreement:
                    failures.append(f"{row['artifact']} (top-1 {row['top1_agreement']:.4f}, "
                                    f"referable {row['referable_agreement']:.4f})")
        ood, clinical_report = clinical.finish_clinical(
            choice, module, cfg, opts.clinical_opts, out=build, artifact_outputs=outputs, parity_labels=test_y,
            parity_public=opts.test_dir is None, log=log,
            public_images={} if opts.calibration_dir else {"the int8 calibration photos": calib})
        if failures and not opts.force:
            raise ExportError(f"agreement with fp32 below {opts.min_agreement:.2%} for {', '.join(failures)}; "
                              "nothing written (pass --force to export anyway)")
        manifest_dict = manifest.build_manifest(ckpt, model_version=opts.model_version, artifacts=entries,
                                                quality=quality, referral=choice.referral,
                                                calibration=choice.calibration, ood=ood,
                                                allow_seeded=opts.allow_seeded)
        notes = ["Core ML: predict() needs macOS and was not run; the spec was reloaded and the stored "
                 "ML program was evaluated op by op in numpy (export/mil_numpy.py)."] if "coreml" in opts.formats else []
        if failures:
            notes.append(f"FORCED: exported despite low agreement: {', '.join(failures)}")
        report = {"checkpoint": str(opts.checkpoint), "mode": ckpt["mode"], "model_version": opts.model_version,
                  "input_size": cfg.image_size, "test_images": test_src, "calibration": calib_src,
                  "machine": parity.machine_name(), "latency_runs": opts.latency_runs,
                  "min_agreement": opts.min_agreement, "forced": bool(failures),
                  "referable_rule": parity.describe_rule(rule), "log": chatter.LOG_NAME,
                  "torch": torch_row, "artifacts": rows, "notes": notes}
        report["clinical"] = clinical_report
        notes.append("Referral threshold, calibration (ECE, reliability diagrams) and out-of-distribution "
                     "statistics: clinical.md")
        parity.write_report(build, report)
        data = manifest.manifest_bytes(manifest_dict)
        (build / "manifest.json").write_bytes(data)
        (build / "manifest.sig").write_bytes(signing.sign_manifest(data, key))
        _swap_into_place(build, opts.out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    if failures:
        print(f"WARNING: forced export with low agreement: {', '.join(failures)}", file=sys.stderr)
    return opts.out
