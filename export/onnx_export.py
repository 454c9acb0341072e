"""ONNX: fp32 through torch's dynamo exporter; int8 through ONNX Runtime (QDQ) or int8 weights alone.

Both are single files (a device wants one file; the dynamo exporter writes an external
``.onnx.data`` unless told otherwise). ``quantize_int8`` first rounds the conv weights with GPTQ
(``export.weight_rounding``), then builds static QDQ int8 (per-channel int8 weights, uint8
activations calibrated by min/max; the QOperator and dynamic formats were about 10x slower here,
docs/DESIGN.md). When that model does not keep the fp32 decisions on the selection photos
(``parity.keeps_decisions``), it writes int8 weights with float activations instead
(DequantizeLinear on each weight). Either way the head stays float and the file is compacted:
no per-node metadata (48 KB), short tensor names (30 KB), one copy of each all-zero zero point.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from export import ExportError, chatter, parity, weight_rounding

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")
HEAD = "model.classifier.1"  # the head's name in the ``LogitsAndFeatures`` view


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
    with chatter.to_log(chatter.log_path_for(path), f"{path.name}: torch.onnx (dynamo)"):
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


def _constant(model, name: str) -> np.ndarray:
    """An initializer's (or a Constant node's) value; the exporter shares identical constants."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    raise KeyError(name)


def _torch_view(model, path: Path) -> torch.nn.Module:
    """The export view rebuilt from an fp32 ONNX file's Conv weights, matched to its convs in order.

    Matched by position, not name: the exporter shares identical constants (a fresh model's
    all-zero biases become one tensor), so names do not always follow the torch parameters.
    """
    from trainer.model import LogitsAndFeatures, build_model

    nodes = [node for node in model.graph.node if node.op_type == "Conv"]
    try:
        weights = [_constant(model, node.input[1]) for node in nodes]
        biases = [_constant(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
                  for node in nodes]
        view = LogitsAndFeatures(build_model(num_classes=int(weights[-1].shape[0]), dropout=0.0)).eval()
        layers = list(weight_rounding.convs(view).values())
        if len(layers) != len(nodes) or any(c.weight.shape != w.shape for c, w in zip(layers, weights)):
            raise ValueError(f"{len(nodes)} Conv nodes for {len(layers)} convs, or other shapes")
        with torch.no_grad():
            for conv, weight, bias in zip(layers, weights, biases):
                conv.weight.copy_(torch.from_numpy(weight.copy()))
                conv.bias.copy_(torch.from_numpy(bias.copy()) if bias is not None else torch.zeros_like(conv.bias))
    except (KeyError, IndexError, ValueError) as exc:
        raise ExportError(f"{path}: weights do not match the SqueezeNet export view ({exc})") from exc
    return view


def _rounded_fp32(fp32_path: Path, calibration: np.ndarray, work: Path) -> Path:
    """A copy of the fp32 model whose conv weights (head aside) are GPTQ-rounded onto the int8 grid."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_path))
    rounded = weight_rounding.rounded_copy(_torch_view(model, fp32_path), calibration, skip={HEAD})
    nodes = [node for node in model.graph.node if node.op_type == "Conv"]
    uses: dict[str, int] = {}
    for node in nodes:
        uses[node.input[1]] = uses.get(node.input[1], 0) + 1
    new = {node.input[1]: conv.weight.detach().numpy()
           for node, conv in zip(nodes, weight_rounding.convs(rounded).values()) if uses[node.input[1]] == 1}
    for init in model.graph.initializer:
        if init.name in new:  # a weight two convs share (identical values) keeps its fp32 values
            init.CopyFrom(numpy_helper.from_array(new[init.name].astype(np.float32), init.name))
    path = work / "rounded.onnx"
    onnx.save(model, str(path))
    return path


def _static(fp32_path: Path, out_path: Path, calibration: np.ndarray, work: Path, *, per_channel: bool,
            method: str) -> None:
    """ONNX Runtime static QDQ: int8 weights, uint8 activations, the head excluded (float)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared))  # shape inference + graph cleanup first
    quantize_static(str(prepared), str(out_path), _Reader(calibration),
                    quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=methods[method], nodes_to_exclude=head_nodes(prepared))


def _weight_only(fp32_path: Path, out_path: Path) -> None:
    """int8 weights (per channel, symmetric), float activations: DequantizeLinear -> Conv."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_path))
    inits = {init.name: init for init in model.graph.initializer}
    head = set(head_nodes(fp32_path))
    nodes = []
    for node in model.graph.node:
        weight = node.input[1] if node.op_type == "Conv" else None
        if weight in inits and node.name not in head:
            w = numpy_helper.to_array(inits[weight])
            rows = torch.from_numpy(w).double().reshape(len(w), -1)
            scale = weight_rounding.grid_scale(rows).float().numpy()
            q = np.clip(np.round(w / scale[:, None, None, None]), -weight_rounding.QMAX, weight_rounding.QMAX)
            model.graph.initializer.remove(inits[weight])
            model.graph.initializer.extend([numpy_helper.from_array(q.astype(np.int8), weight + "_q"),
                                            numpy_helper.from_array(scale, weight + "_scale")])
            nodes.append(helper.make_node("DequantizeLinear", [weight + "_q", weight + "_scale"], [weight], axis=0))
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out_path))


def compact(path: Path) -> Path:
    """Shrink an ONNX file in place without changing what it computes.

    Drops per-node metadata and doc strings (the exporter's stack traces and class paths), gives
    every tensor except the graph's inputs and outputs a short name, and keeps one copy of
    identical zero-point initializers.

    Returns:
        ``path``.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del graph.value_info[:]  # shape hints only; ONNX Runtime infers them again
    # identical zero points (all zeros, one array per channel count) -> one initializer each
    first: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    kept = []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        key = (init.data_type, array.shape, array.tobytes()) if array.size and not array.any() else None
        if key is not None and key in first:
            alias[init.name] = first[key]
            continue
        if key is not None:
            first[key] = init.name
        kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        name = alias.get(name, name)
        if name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for i, node in enumerate(graph.node):
        node.name = f"n{i}"
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray, *,
                  per_channel: bool = True, method: str = "minmax", activations: str = "auto",
                  gptq: bool = True, compact_file: bool = True, rule: dict | None = None) -> Path:
    """int8 ONNX from the fp32 one: GPTQ-rounded int8 weights; uint8 or float activations.

    Args:
        fp32_path: the fp32 model from ``export_fp32``.
        out_path: the int8 ``.onnx`` to write.
        calibration: float32 (N, 3, S, S) preprocessed images (not the test set).
        per_channel: one weight scale per output channel in the static model.
        method: ``minmax``, ``entropy`` or ``percentile`` activation calibration.
        activations: ``"int8"`` (static QDQ), ``"float"`` (int8 weights only), or ``"auto"``:
            static unless ``parity.keeps_decisions`` fails on the selection images, then float.
        rule: the referable decision the device acts on (``parity.referral_rule``), for that check.
        gptq, compact_file: levers benchmarks/bench_export.py measures (both on in export).

    Returns:
        ``out_path``.

    Raises:
        ExportError: an unknown ``method`` or ``activations``, or weights that do not match.
    """
    if method not in ("minmax", "entropy", "percentile"):
        raise ExportError(f"calibration method {method!r} is not one of ['entropy', 'minmax', 'percentile']")
    if activations not in ("auto", "int8", "float"):
        raise ExportError(f"activations must be 'auto', 'int8' or 'float', got {activations!r}")
    log = chatter.log_path_for(out_path)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        work = Path(tmp)
        with chatter.to_log(log, f"{out_path.name}: GPTQ weight rounding, ONNX Runtime quantization"):
            rounded = _rounded_fp32(fp32_path, calibration, work) if gptq else fp32_path
            if activations != "float":
                _static(rounded, out_path, calibration, work, per_channel=per_channel, method=method)
        if activations == "auto":
            selection = parity.selection_images(calibration)
            reference = parity.runner_outputs(OnnxRunner(fp32_path), selection)[0]
            logits = parity.runner_outputs(OnnxRunner(out_path), selection)[0]
            if not parity.keeps_decisions(logits, reference, rule=rule):
                activations = "float"
        if activations == "float":
            with chatter.to_log(log, f"{out_path.name}: int8 weights, float activations"):
                _weight_only(rounded, out_path)
    return compact(out_path) if compact_file else out_path


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


def int8_activations(path: Path) -> bool:
    """True for a static QDQ model (activations quantized), False for int8 weights with float activations."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


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
