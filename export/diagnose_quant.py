"""Where does an int8 ``.tflite`` drift from fp32? A per-layer comparison on the parity images.

    python -m export.diagnose_quant --checkpoint RUN/model.pt [--tflite FILE] [--images 100]

Every op output the LiteRT interpreter keeps (``experimental_preserve_all_tensors``) is
dequantized with its own scale and zero point and compared with the torch activation of the same
shape, in execution order: relative error ``|q - f| / |f|`` (L2, over all images), the share of
values pinned at the int8 limits (clipped by a calibrated range that was too narrow), and the
quantization step. The last rows are the outputs: top-1 and referable-decision agreement.

Without ``--tflite`` a model is built as export builds it (``tflite_export.build_int8``, int8
activations unless ``--activations float``) in a temporary folder. A developer's tool, not part of
``python -m export all``.

What it showed on a short-trained 48 px model (issue 16), litert-torch's defaults: the error grows
layer by layer from 0.8 % (first conv) to 7-9 % (fire9), with the largest single jump at fire3's
3x3 expand (2.1 -> 4.2 %: the histogram observer had narrowed that range from 7.96 to about 5, so
the largest activations were clipped by up to 150 steps) and at the head (6.9 -> 10.4 %: int8
features in, int8 logits out, 0.4 % of the logits pinned at the int8 limit). Min/max ranges clip
less (5.6 there: parity photos still exceed the calibration photos' maximum), a float head and GPTQ
weights remove the rest of those; what is left is the rounding of every activation, and the early
layers matter most (int8 only at the input and conv1 flipped 8 of 500 decisions, only in fire9 one):
the fp32 model itself flips 1.3 % of its decisions under half a gray level of input noise.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from export.tflite_export import TFLiteRunner

_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "TRANSPOSE"}


def torch_activations(model: torch.nn.Module, images: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """fp32 activations after every ReLU, max-pool and Fire block, then ``features`` and ``logits``.

    Returns:
        [(layer name, array (N, C, H, W) or (N, C))] in execution order.
    """
    from torchvision.models.squeezenet import Fire

    records: dict[str, list[np.ndarray]] = {}
    order: list[str] = []
    hooks = []
    for name, module in model.features.named_modules(prefix="features"):
        if isinstance(module, (torch.nn.ReLU, torch.nn.MaxPool2d, Fire)):
            def hook(_m, _i, out, name=name):
                if name not in records:
                    order.append(name)
                records.setdefault(name, []).append(out.detach().numpy().copy())
            hooks.append(module.register_forward_hook(hook))
    feats, logits = [], []
    try:
        with torch.no_grad():
            for image in images:
                x = torch.from_numpy(image[None])
                f = model.forward_features(x)
                feats.append(f.numpy())
                logits.append(model.head(f).numpy())
    finally:
        for h in hooks:
            h.remove()
    return ([(n, np.concatenate(records[n])) for n in order]
            + [("features (pooled)", np.concatenate(feats)), ("logits", np.concatenate(logits))])


def tflite_activations(path: Path, images: np.ndarray) -> list[dict]:
    """Every op's first output, dequantized, NHWC turned to NCHW, for all images.

    Returns:
        [{op, index, name, shape (NCHW), dtype, scale, zero_point, values (N, ...)}] in execution order.
    """
    from ai_edge_litert import interpreter as litert

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": it is
        builtin = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # XNNPACK keeps no intermediates
        interp = litert.Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                                    experimental_op_resolver_type=builtin)
    interp.allocate_tensors()
    details = {t["index"]: t for t in interp.get_tensor_details()}
    ops = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    inp = interp.get_input_details()[0]
    rows = [{"op": op["op_name"], "index": op["outputs"][0], "values": []} for op in ops]
    for image in images:
        interp.set_tensor(inp["index"], TFLiteRunner.quantize(image[None], inp))
        interp.invoke()
        for row in rows:
            detail = details[row["index"]]
            value = TFLiteRunner.dequantize(interp.get_tensor(row["index"]), detail)
            raw = interp.get_tensor(row["index"])
            row.setdefault("saturated", []).append(_pinned(raw, detail))
            row["values"].append(value.transpose(0, 3, 1, 2) if value.ndim == 4 else value)
    for row in rows:
        detail = details[row["index"]]
        row["values"] = np.concatenate(row["values"])
        row["saturated"] = float(np.mean(row["saturated"]))
        row.update(name=detail["name"], dtype=np.dtype(detail["dtype"]).name,
                   scale=float(detail["quantization"][0]), zero_point=int(detail["quantization"][1]))
    return rows


def _pinned(raw: np.ndarray, detail: dict) -> float:
    """Share of values at an int8 limit that is not the zero point (a clipped value, not a zero)."""
    if not np.issubdtype(raw.dtype, np.integer):
        return 0.0
    info, zero = np.iinfo(raw.dtype), int(detail["quantization"][1])
    limits = [v for v in (info.min, info.max) if v != zero]
    return float(np.isin(raw, limits).mean())


def compare_layers(model: torch.nn.Module, tflite: Path, images: np.ndarray) -> list[dict]:
    """Match TFLite op outputs to torch activations by shape, in order, and measure the drift.

    Returns:
        [{op, layer, shape, rel_error, max_abs_error, saturated, scale}] per TFLite op, in execution order.
    """
    reference = torch_activations(model, images)
    rows, pointer, last = [], 0, None
    for t in tflite_activations(tflite, images):
        shape = t["values"].shape
        match = None
        if t["op"] in _PASS_THROUGH and last is not None and last[1].size == t["values"].size:
            match = last  # a requantize or reshape of the previous tensor
        else:
            for j in range(pointer, len(reference)):
                if reference[j][1].shape == shape or (len(shape) == 4 and shape[2:] == (1, 1)
                                                      and reference[j][1].shape == shape[:2]):
                    match, pointer = reference[j], j + 1
                    break
        if match is None:
            continue
        last = match
        ref = match[1].reshape(shape)
        diff = t["values"] - ref
        rows.append({"op": t["op"], "layer": match[0], "shape": list(shape[1:]), "dtype": t["dtype"],
                     "rel_error": float(np.linalg.norm(diff) / max(np.linalg.norm(ref), 1e-12)),
                     "max_abs_error": float(np.abs(diff).max()), "saturated": t["saturated"],
                     "scale": t["scale"], "range": float(np.abs(ref).max())})
    return rows


def main(argv: list[str] | None = None) -> int:
    from edge_client.preprocess import PreprocessConfig
    from export import calibration, parity, tflite_export
    from trainer.checkpoint import load_checkpoint
    from trainer.model import LogitsAndFeatures

    parser = argparse.ArgumentParser(prog="python -m export.diagnose_quant", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="RUN/model.pt")
    parser.add_argument("--tflite", type=Path, help="an int8 .tflite of that checkpoint (default: export one)")
    parser.add_argument("--images", type=int, default=100, help="parity images to compare on (default 100)")
    parser.add_argument("--calibration-images", type=int, default=100, help="when building (default 100)")
    parser.add_argument("--activations", choices=("int8", "float"), default="int8",
                        help="the activations of the model built without --tflite (default int8)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, ckpt = load_checkpoint(args.checkpoint)
    cfg = PreprocessConfig.from_dict(dict(ckpt["preprocess"]))
    images, _ = calibration.synthetic_images(args.images, cfg, seed=calibration.PARITY_SEED)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.tflite
        if path is None:
            calib, _ = calibration.synthetic_images(args.calibration_images, cfg, seed=calibration.CALIBRATION_SEED)
            path = tflite_export.build_int8(LogitsAndFeatures(model).eval(), cfg.image_size,
                                            Path(tmp) / "model_int8.tflite", calib,
                                            activations=args.activations == "int8")
        rows = compare_layers(model, path, images)
        logits = np.stack([TFLiteRunner(path).run_one(x)[0] for x in images])
    print(f"{'op':<14} {'torch layer':<34} {'shape':<16} {'dtype':<7} {'rel err':>8} {'max|err|':>9} "
          f"{'|f| max':>8} {'step':>8} {'pinned':>7}")
    for r in rows:
        print(f"{r['op']:<14} {r['layer']:<34} {'x'.join(map(str, r['shape'])):<16} {r['dtype']:<7} "
              f"{r['rel_error']:>8.4f} {r['max_abs_error']:>9.4f} {r['range']:>8.3f} {r['scale']:>8.5f} "
              f"{r['saturated']:>7.2%}")
    ref = torch_activations(model, images)[-1][1]
    top1, referable = parity.agreement(logits, ref)
    print(f"\n{len(images)} parity images: top-1 agreement {top1:.4f}, "
          f"referable-decision agreement {referable:.4f}, max |dlogit| {np.abs(logits - ref).max():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
