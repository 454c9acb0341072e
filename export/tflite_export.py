"""TFLite through litert-torch: int8 weights (GPTQ-rounded), int8 or float activations; fp32 on request.

``export_int8`` builds, by PT2E static quantization (torchao), a model whose conv weights are int8
and whose body activations are int8 (per-tensor, min/max calibrated: the histogram observer
litert-torch defaults to clipped the largest activations and flipped more decisions). The head
(5 x 512) stays float, so ``logits`` and ``features`` are float32 outputs: an int8 ``logits``
tensor had a step of up to 0.08 and saturated on wide-logit models. When that model does not keep
the fp32 decisions on the selection photos (``parity.keeps_decisions``: the calibration photos
turned and mirrored), it is rebuilt with float activations and int8 weights (DEQUANTIZE + float CONV_2D):
as faithful as Core ML's weight-only int8, slower (see the README's export table).

A static int8 model has an int8 input: a caller quantizes the preprocessed image with the input's
scale and zero point (real = scale * (q - zp)); ``TFLiteRunner`` does exactly that, as a device must.
Tensor names are short (the module-path names litert-torch derives cost 35 KB) and the expand
convs of the last four Fire modules use one weight scale per tensor in the int8-activation model
(their channels' ranges are within 1.3x of each other; 24 bytes of scale and zero point per
channel, weight and bias, kept the file over 0.8 MB otherwise).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from export import ExportError, chatter, parity, weight_rounding

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")
HEAD = "module.model.classifier.1"  # the head's name in the ``_NamedOutputs`` view


class _NamedOutputs(torch.nn.Module):
    """litert-torch names signature outputs after dict keys and inputs after keyword names."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 (the tensor's name)
        logits, features = self.module(input)
        return {"logits": logits, "features": features}


@contextlib.contextmanager
def _short_names():
    """Name tensors without module paths: litert-torch names each tensor after every module and
    export wrapper it came through (up to 350 characters, 35 KB of a 0.85 MB file). Without that
    debug location the converter keeps short op-based names; the signature names are unchanged."""
    from litert_torch.backend import debuginfo

    original = debuginfo.build_mlir_debuginfo
    debuginfo.build_mlir_debuginfo = lambda node: None
    try:
        yield
    finally:
        debuginfo.build_mlir_debuginfo = original


def per_tensor_layers(view: torch.nn.Module) -> set[str]:
    """Expand convs of the last four Fire modules (1792 of 2944 channels): one scale per tensor."""
    names = set()
    for name in weight_rounding.convs(view):
        parts = name.split(".")
        if "expand" in parts[-1] and "features" in parts and int(parts[parts.index("features") + 1]) >= 9:
            names.add(name)
    return names


def _configs(activations: bool, observer: str = "minmax"):
    """(per-channel, per-tensor) PT2E configs: int8 symmetric weights, optional int8 activations."""
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    act_observer = {"minmax": MinMaxObserver, "histogram": HistogramObserver}[observer]
    act = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine,
                           is_dynamic=False, observer_or_fake_quant_ctr=act_observer.with_args(eps=2**-12))
    if not activations:
        act = None

    def weight(per_channel: bool):
        observer = PerChannelMinMaxObserver if per_channel else MinMaxObserver
        return QuantizationSpec(dtype=torch.int8, quant_min=-weight_rounding.QMAX, quant_max=weight_rounding.QMAX,
                                qscheme=torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric,
                                ch_axis=0, is_dynamic=False,
                                observer_or_fake_quant_ctr=observer.with_args(eps=2**-12))

    return (utils.QuantizationConfig(act, act, weight(True), None, None, False, False),
            utils.QuantizationConfig(act, act, weight(False), None, None, False, False))


def _quantizer(activations: bool, per_tensor: set[str], *, observer: str = "minmax", float_head: bool = True):
    """litert-torch's PT2E quantizer, annotating per conv: per-tensor set, per-channel rest, head skipped."""
    from litert_torch.quantize import pt2e_quantizer

    per_channel_config, per_tensor_config = _configs(activations, observer)
    skipped = HEAD if float_head else None

    def path(node) -> str | None:
        """The conv a node belongs to (its ReLU included); None for weights and biases."""
        stack = node.meta.get("nn_module_stack")
        return list(stack.values())[-1][0].removesuffix("_activation") if stack else None

    class Quantizer(pt2e_quantizer.PT2EQuantizer):
        # PT2EQuantizer.annotate treats a config without activations as dynamic and ignores
        # filters then; this annotates statically either way, conv by conv.
        def annotate(self, model):
            def wanted(per_tensor_wanted: bool):
                def keep(node) -> bool:
                    where = path(node)
                    return where is None or (where != skipped and (where in per_tensor) == per_tensor_wanted)
                return keep
            self._annotate_all_static_patterns(model, per_tensor_config, wanted(True))
            self._annotate_all_static_patterns(model, per_channel_config, wanted(False))
            pt2e_quantizer.propagate_annotation(model)
            return model

    return Quantizer().set_global(per_channel_config)


def export_fp32(module: torch.nn.Module, image_size: int, path: Path) -> Path:
    """Write an fp32 ``.tflite`` (float32 input ``input``, outputs ``logits``, ``features``)."""
    with chatter.to_log(chatter.log_path_for(path), f"{path.name}: litert-torch fp32"):
        import litert_torch

        sample = {"input": torch.zeros(1, 3, image_size, image_size)}
        litert_torch.convert(_NamedOutputs(module).eval(), (), sample).export(str(path))
    return path


def build_int8(module: torch.nn.Module, image_size: int, path: Path, calibration: np.ndarray, *,
               activations: bool, observer: str = "minmax", float_head: bool = True, short_names: bool = True,
               per_tensor: set[str] | None = None, gptq: bool = True) -> Path:
    """Write one int8 ``.tflite``: GPTQ-rounded int8 weights, int8 (True) or float (False) activations.

    Args:
        module: the two-output export view, in eval mode (not modified).
        image_size: square input side (batch fixed to 1).
        path: the ``.tflite`` to write.
        calibration: float32 (N, 3, S, S) preprocessed images (not the parity images).
        activations: quantize the body's activations to int8 (calibrated ranges).
        observer, float_head, short_names, per_tensor, gptq: the levers benchmarks/bench_export.py
            measures; the defaults are what export ships (``per_tensor`` None: ``per_tensor_layers``
            with int8 activations, none without). ``observer="histogram"`` is litert-torch's default.

    Returns:
        ``path``.
    """
    named = _NamedOutputs(module).eval()
    if per_tensor is None:
        per_tensor = per_tensor_layers(named) if activations else set()
    title = f"{path.name}: litert-torch PT2E, int8 weights, {'int8' if activations else 'float'} activations"
    with chatter.to_log(chatter.log_path_for(path), title):
        import litert_torch
        from litert_torch.quantize import quant_config
        from torchao.quantization.pt2e import quantize_pt2e

        rounded = (weight_rounding.rounded_copy(named, calibration, per_tensor=per_tensor,
                                                skip={HEAD} if float_head else set()) if gptq else named)
        sample = {"input": torch.zeros(1, 3, image_size, image_size)}
        quantizer = _quantizer(activations, per_tensor, observer=observer, float_head=float_head)
        prepared = quantize_pt2e.prepare_pt2e(torch.export.export(rounded, (), sample).module(), quantizer)
        with torch.no_grad():  # observers record ranges (weight observers too: unrun, they give scale 1)
            for image in calibration if activations else calibration[:1]:
                prepared(input=torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        converted.training = False  # traced from an eval-mode view; exported modules refuse .eval()
        with _short_names() if short_names else contextlib.nullcontext():
            litert_torch.convert(converted, (), sample,
                                 quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    return path


def export_int8(module: torch.nn.Module, image_size: int, path: Path, calibration: np.ndarray, *,
                activations: str = "auto", rule: dict | None = None) -> Path:
    """Write the int8 ``.tflite`` a device gets: int8 activations when they keep fp32's decisions.

    Args:
        module: the two-output export view, in eval mode.
        image_size: square input side (batch fixed to 1).
        path: the ``.tflite`` to write.
        calibration: float32 (N, 3, S, S) preprocessed images (not the parity images).
        activations: ``"int8"``, ``"float"``, or ``"auto"``: int8, unless ``parity.keeps_decisions``
            fails on the selection images (the calibration images turned and mirrored), then float.
        rule: the referable decision the device acts on (``parity.referral_rule``), for that check.

    Returns:
        ``path``.

    Raises:
        ExportError: ``activations`` is not one of the three values.
    """
    if activations not in ("auto", "int8", "float"):
        raise ExportError(f"activations must be 'auto', 'int8' or 'float', got {activations!r}")
    build_int8(module, image_size, path, calibration, activations=activations != "float")
    if activations == "auto":
        selection = parity.selection_images(calibration)
        reference = parity.torch_outputs(module, selection)[0]
        logits = parity.runner_outputs(TFLiteRunner(path), selection)[0]
        if not parity.keeps_decisions(logits, reference, rule=rule):
            build_int8(module, image_size, path, calibration, activations=False)
    return path


class TFLiteRunner:
    """Runs a ``.tflite`` with ai-edge-litert (XNNPACK on, one thread by default)."""

    def __init__(self, path: Path, *, threads: int = 1, xnnpack: bool = True) -> None:
        with chatter.to_log(None):  # "Created TensorFlow Lite XNNPACK delegate for CPU."
            from ai_edge_litert import interpreter as litert

            resolver = (litert.OpResolverType.AUTO if xnnpack
                        else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self.interpreter = litert.Interpreter(model_path=str(path), num_threads=threads,
                                                  experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
            signature = self.interpreter.get_signature_runner("serving_default")
            inputs, outputs = signature.get_input_details(), signature.get_output_details()
            if set(inputs) != {INPUT_NAME} or set(outputs) != set(OUTPUT_NAMES):
                raise ExportError(f"{path}: signature has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                                  f"expected {INPUT_NAME!r} and {list(OUTPUT_NAMES)}")
            self.input = inputs[INPUT_NAME]
            self.outputs = {name: outputs[name] for name in OUTPUT_NAMES}
            del signature  # it holds views of the interpreter's buffers, which invoke() refuses
            self.interpreter.invoke()  # the delegate's first-run lines go to the log too

    @property
    def int8_activations(self) -> bool:
        """True for a model with an int8 input (int8 activations), False for float activations."""
        return not np.issubdtype(self.input["dtype"], np.floating)

    @staticmethod
    def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
        """Real values to the tensor's dtype using its scale and zero point (identity for float)."""
        scale, zero = detail["quantization"]
        if np.issubdtype(detail["dtype"], np.floating):
            return x.astype(detail["dtype"])
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])

    @staticmethod
    def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
        """Tensor values to real float32 (real = scale * (q - zero_point))."""
        scale, zero = detail["quantization"]
        if np.issubdtype(detail["dtype"], np.floating):
            return q.astype(np.float32)
        return (scale * (q.astype(np.float32) - zero)).astype(np.float32)

    def run_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (5,) and features (512,) for one preprocessed (3, S, S) image."""
        self.interpreter.set_tensor(self.input["index"], self.quantize(image[None], self.input))
        self.interpreter.invoke()
        logits, features = (self.dequantize(self.interpreter.get_tensor(self.outputs[n]["index"]), self.outputs[n])
                            for n in OUTPUT_NAMES)
        return logits[0], features[0]

    def tensor_specs(self) -> dict:
        """Input and output tensors for the manifest, with scale/zero_point on quantized ones."""
        def spec(name: str, detail: dict, layout: str | None = None) -> dict:
            out = {"name": name, "tensor": detail["name"]}
            if layout:
                out["layout"] = layout
            out.update(dtype=np.dtype(detail["dtype"]).name, shape=[int(d) for d in detail["shape"]])
            scale, zero = detail["quantization"]
            if not np.issubdtype(detail["dtype"], np.floating):
                out.update(scale=float(scale), zero_point=int(zero))
            return out

        return {"inputs": [spec(INPUT_NAME, self.input, "NCHW")],
                "outputs": [spec(n, self.outputs[n]) for n in OUTPUT_NAMES]}
