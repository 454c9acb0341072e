"""TFLite through litert-torch: int8 by PT2E static quantization (torchao), fp32 on request.

The int8 model has int8 input and output tensors: a caller quantizes the preprocessed image
with the input's scale and zero point and dequantizes each output (real = scale * (q - zp)).
``TFLiteRunner`` does exactly that, as a device must.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import torch

from export import ExportError

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")


class _NamedOutputs(torch.nn.Module):
    """litert-torch names signature outputs after dict keys and inputs after keyword names."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, input: torch.Tensor) -> dict[str, torch.Tensor]:  # noqa: A002 (the tensor's name)
        logits, features = self.module(input)
        return {"logits": logits, "features": features}


@contextlib.contextmanager
def _quiet():
    """litert-torch prints progress bars and absl lines; keep them out of the CLI's output."""
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.getLogger().setLevel(level)


def export_fp32(module: torch.nn.Module, image_size: int, path: Path) -> Path:
    """Write an fp32 ``.tflite`` (float32 input ``input``, outputs ``logits``, ``features``)."""
    import litert_torch

    sample = {"input": torch.zeros(1, 3, image_size, image_size)}
    with _quiet():
        litert_torch.convert(_NamedOutputs(module).eval(), (), sample).export(str(path))
    return path


def export_int8(module: torch.nn.Module, image_size: int, path: Path, calibration: np.ndarray, *,
                per_channel: bool = True) -> Path:
    """Write an int8 ``.tflite``: PT2E static quantization calibrated on images.

    Args:
        module: the two-output export view, in eval mode.
        image_size: square input side (batch fixed to 1).
        path: the ``.tflite`` to write.
        calibration: float32 (N, 3, S, S) preprocessed images (not the test set).
        per_channel: one weight scale per output channel.

    Returns:
        ``path``.
    """
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    named = _NamedOutputs(module).eval()
    sample = {"input": torch.zeros(1, 3, image_size, image_size)}
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=False))
    with _quiet():
        graph = torch.export.export(named, (), sample).module()
        prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for image in calibration:  # observers record activation ranges, one image at a time
                prepared(input=torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        edge = litert_torch.convert(converted, (), sample,
                                    quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(path))
    return path


class TFLiteRunner:
    """Runs a ``.tflite`` with ai-edge-litert (XNNPACK on, one thread by default)."""

    def __init__(self, path: Path, *, threads: int = 1, xnnpack: bool = True) -> None:
        from ai_edge_litert import interpreter as litert

        resolver = (litert.OpResolverType.AUTO if xnnpack
                    else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        with _quiet():
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
