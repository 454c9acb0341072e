"""Core ML: an ML Program ``.mlpackage`` with int8 weights (coremltools), shipped as a zip.

Core ML predicts only on macOS. On Linux the package is checked by reloading its spec and by
evaluating the stored ML program op by op with numpy (``export.mil_numpy``).

The weights are GPTQ-rounded first (``export.weight_rounding``, the head included: Core ML keeps
float activations but stores every weight in int8), so coremltools' own per-channel symmetric
quantization stores exactly those values. The program is then compacted: short op and variable
names and one copy of each repeated constant (every conv carried its own strides, pads and
dilations), 49.7 -> about 12 KB of the 0.80 MB package.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from export import chatter, weight_rounding

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamp: the same package always zips to the same bytes


def _compact(mlmodel):
    """Short op/variable names and deduplicated constants: same program, a smaller spec."""
    from coremltools.converters.mil.mil.passes.graph_pass import AbstractGraphPass
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.models.utils import _apply_graph_pass

    class ShortNames(AbstractGraphPass):
        def apply(self, prog):
            for function in prog.functions.values():
                keep = {v.name for v in function.inputs.values()} | {v.name for v in function.outputs}
                for i, op in enumerate(function.operations):
                    op.name = f"o{i}"
                    for j, var in enumerate(op.outputs):
                        if var.name not in keep:
                            var.set_name(f"v{i}" if len(op.outputs) == 1 else f"v{i}_{j}")

    dedup = PASS_REGISTRY["common::const_deduplication"]
    previous = dedup.const_threshold  # a class-wide setting in coremltools: put it back after
    dedup.const_threshold = 0  # small consts too (each conv's strides, pads, dilations)
    try:
        return _apply_graph_pass(mlmodel, [dedup, ShortNames()], skip_model_load=True)
    finally:
        dedup.const_threshold = previous


def export_mlpackage(module: torch.nn.Module, image_size: int, path: Path, *, metadata: dict,
                     class_names: list[str], int8: bool = True, calibration: np.ndarray | None = None,
                     compact: bool = True) -> Path:
    """Convert to an ML Program, with int8 (per-channel, symmetric) weights, and save ``path``.

    Args:
        module: the two-output export view, in eval mode.
        image_size: square input side (batch fixed to 1).
        path: the ``.mlpackage`` folder to write.
        metadata: ``author``, ``license``, ``description``, ``version`` and any further string
            fields (epsilon, delta, ...), stored as the model's metadata.
        class_names: the grade names, stored as ``class_labels`` metadata (the outputs are raw
            logits and features, so a Core ML classifier head would hide the features output).
        int8: store int8 weights (False: float32, for checking the numpy evaluator).
        calibration: float32 (N, 3, S, S) images for GPTQ rounding; None rounds to nearest.
        compact: short names and deduplicated constants in the program (a lever the benchmark measures).

    Returns:
        ``path``.
    """
    with chatter.to_log(chatter.log_path_for(path), f"{path.name}: coremltools"):
        import coremltools as ct
        import coremltools.optimize.coreml as cto

        if int8 and calibration is not None:
            module = weight_rounding.rounded_copy(module, calibration)
        sample = torch.zeros(1, 3, image_size, image_size)
        traced = torch.jit.trace(module, sample)
        mlmodel = ct.convert(traced, inputs=[ct.TensorType(name=INPUT_NAME, shape=sample.shape, dtype=np.float32)],
                             outputs=[ct.TensorType(name=n) for n in OUTPUT_NAMES], convert_to="mlprogram",
                             minimum_deployment_target=ct.target.iOS16,
                             compute_precision=ct.precision.FLOAT32)
        if int8:  # weight_threshold=0: quantize every conv weight, even the small first layer
            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0))
            mlmodel = cto.linear_quantize_weights(mlmodel, config=config)
        if compact:
            mlmodel = _compact(mlmodel)
    mlmodel.author = str(metadata.get("author", ""))
    mlmodel.license = str(metadata.get("license", ""))
    mlmodel.short_description = str(metadata.get("description", ""))
    mlmodel.version = str(metadata.get("version", ""))
    extra = {k: str(v) for k, v in metadata.items() if k not in {"author", "license", "description", "version"}}
    extra["class_labels"] = json.dumps(list(class_names))
    mlmodel.user_defined_metadata.update(extra)
    mlmodel.input_description[INPUT_NAME] = "preprocessed fundus photo, NCHW float32, normalised"
    mlmodel.output_description["logits"] = f"unnormalised scores for {', '.join(class_names)}"
    mlmodel.output_description["features"] = "pooled 512-vector the head reads"
    with chatter.to_log(chatter.log_path_for(path)):
        mlmodel.save(str(path))
    return path


def zip_package(package: Path, zip_path: Path) -> Path:
    """Zip a ``.mlpackage`` deterministically (sorted names, fixed timestamps and modes).

    The archive's top folder is the package's name, so unzipping yields ``NAME.mlpackage/``.
    """
    files = sorted(p for p in package.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            info = zipfile.ZipInfo(f"{package.name}/{file.relative_to(package).as_posix()}", ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, file.read_bytes())
    return zip_path


def package_size(package: Path) -> int:
    """Bytes of every file in a ``.mlpackage`` folder."""
    return sum(p.stat().st_size for p in package.rglob("*") if p.is_file())


def describe(package: Path) -> dict:
    """Reload the spec and list what Linux can check: type, inputs, outputs, ops, metadata.

    Returns:
        dict with ``spec_type``, ``inputs``/``outputs`` (name, dtype, shape), ``ops`` (count per
        op type), ``metadata`` and ``size``.
    """
    with chatter.to_log(None):
        import coremltools as ct

        spec = ct.utils.load_spec(str(package))
    array_types = {65568: "float32", 65552: "float16", 131104: "int32"}

    def tensors(features):
        return [{"name": f.name, "dtype": array_types.get(f.type.multiArrayType.dataType, "other"),
                 "shape": [int(d) for d in f.type.multiArrayType.shape]} for f in features]

    ops: dict[str, int] = {}
    for function in spec.mlProgram.functions.values():
        for op in function.block_specializations[function.opset].operations:
            ops[op.type] = ops.get(op.type, 0) + 1
    meta = spec.description.metadata
    return {"spec_type": spec.WhichOneof("Type"), "spec_version": spec.specificationVersion,
            "inputs": tensors(spec.description.input), "outputs": tensors(spec.description.output),
            "ops": dict(sorted(ops.items())),
            "metadata": {"author": meta.author, "license": meta.license, "description": meta.shortDescription,
                         "version": meta.versionString, **dict(meta.userDefined)},
            "size": package_size(package)}


