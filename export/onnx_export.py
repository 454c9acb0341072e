"""ONNX: fp32 through torch's dynamo exporter, int8 through ONNX Runtime static quantization.

Both are single files (a device wants one file; the dynamo exporter writes an external
``.onnx.data`` unless told otherwise). int8 is QDQ with per-channel weights: the QOperator and
dynamic formats were about 10x slower here (docs/DESIGN.md).
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import torch

from export import ExportError

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")


def export_fp32(module: torch.nn.Module, image_size: int, path: Path) -> Path:
    """Write a single-file fp32 ONNX model with input ``input`` and outputs ``logits``, ``features``.

    Args:
        module: the two-output export view (``LogitsAndFeatures``), in eval mode.
        image_size: square input side; the batch is fixed to 1 (what a device runs).
        path: the ``.onnx`` file to write.

    Returns:
        ``path``.

    Raises:
        ExportError: the exporter left weights in a separate file.
    """
    sample = torch.zeros(1, 3, image_size, image_size)
    # The exporter prints progress lines to stdout; keep the CLI's output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(module, (sample,), str(path), input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), dynamo=True, external_data=False)
    leftovers = [p.name for p in path.parent.glob(path.name + ".data")]
    if leftovers:
        raise ExportError(f"{path}: the ONNX exporter wrote external weights {leftovers}")
    return path


class _Reader:
    """ONNX Runtime calibration reader: one image at a time (the model's batch is 1)."""

    def __init__(self, images: np.ndarray) -> None:
        self._items = iter(images)

    def get_next(self) -> dict | None:
        item = next(self._items, None)
        return None if item is None else {INPUT_NAME: item[None].astype(np.float32)}


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray, *,
                  per_channel: bool = True, method: str = "minmax") -> Path:
    """Static int8 quantization (QDQ, int8 weights, uint8 activations) calibrated on images.

    Args:
        fp32_path: the fp32 model from ``export_fp32``.
        out_path: the int8 ``.onnx`` to write.
        calibration: float32 (N, 3, S, S) preprocessed images (not the test set).
        per_channel: one weight scale per output channel (more accurate, same speed here).
        method: ``minmax``, ``entropy`` or ``percentile`` activation calibration.

    Returns:
        ``out_path``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ExportError(f"calibration method {method!r} is not one of {sorted(methods)}")
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))  # shape inference + graph cleanup first
        quantize_static(str(prepared), str(out_path), _Reader(calibration),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], nodes_to_exclude=head_nodes(prepared))
    return out_path


def head_nodes(path: Path) -> list[str]:
    """The head's Conv (C x 512 x 1 x 1 on the pooled vector), kept in float.

    Why: the head is 0.3 % of the weights and 2.5 k multiply-adds, but quantizing its input
    clips features outside the calibration range, so ``logits`` stopped being ``W f + b`` of the
    ``features`` output (measured: up to 2.3 apart on 2 of 200 images).
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    logits = next(o for o in model.graph.output if o.name == "logits")
    classes = logits.type.tensor_type.shape.dim[1].dim_value
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    # the last body conv (fire9 squeeze) also reads 512 channels: match the class count too
    return [n.name for n in model.graph.node
            if n.op_type == "Conv" and shapes.get(n.input[1]) == [classes, 512, 1, 1]]


class OnnxRunner:
    """Runs an ONNX model with ONNX Runtime on the CPU, one thread by default."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (5,) and features (512,) for one preprocessed (3, S, S) image."""
        logits, features = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: image[None].astype(np.float32)})
        return logits[0], features[0]


def tensor_specs(path: Path) -> dict:
    """Input and output tensors of an ONNX model for the manifest (float32 in and out: QDQ)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    elem = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}

    def spec(value, layout=None):
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        out = {"name": value.name, "dtype": elem.get(value.type.tensor_type.elem_type, "other"), "shape": shape}
        return {"name": out["name"], "layout": layout, **out} if layout else out

    return {"inputs": [spec(v, "NCHW") for v in model.graph.input],
            "outputs": [spec(v) for v in model.graph.output]}
