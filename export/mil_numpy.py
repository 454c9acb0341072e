"""Evaluate the ML program stored in a ``.mlpackage`` op by op with numpy.

Core ML's own ``predict`` needs macOS. This reads the package's protobuf and weight blobs
directly (no coremltools converter state) and executes the stored operations, so on Linux the
numbers that ship are checked against torch. It supports the ops a SqueezeNet program uses
(const, constexpr_affine_dequantize, conv, relu, max_pool, avg_pool, concat, reduce_mean,
reshape, expand_dims, squeeze, linear, add, mul, softmax) and refuses any other by name.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BLOB_SENTINEL = 0xDEADBEEF
_NUMPY = {"BOOL": np.bool_, "FLOAT16": np.float16, "FLOAT32": np.float32, "FLOAT64": np.float64,
          "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "UINT8": np.uint8,
          "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64}


class MILError(ValueError):
    """The package cannot be read or holds an op this evaluator does not implement."""


def _model_file(package: Path) -> Path:
    """The spec file named by the package's Manifest.json (its root model item)."""
    manifest = json.loads((package / "Manifest.json").read_text())
    item = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    return package / "Data" / item["path"]


class MILProgram:
    """The ``main`` function of a stored ML program, ready to run on numpy arrays."""

    def __init__(self, package: str | Path) -> None:
        from coremltools.proto import MIL_pb2, Model_pb2  # protobuf classes only, no converter

        self.package = Path(package)
        try:
            spec = Model_pb2.Model()
            spec.ParseFromString(_model_file(self.package).read_bytes())
        except (OSError, KeyError, ValueError) as exc:
            raise MILError(f"{self.package}: not a readable .mlpackage ({exc})") from exc
        if spec.WhichOneof("Type") != "mlProgram":
            raise MILError(f"{self.package}: holds a {spec.WhichOneof('Type')}, not an ML program")
        function = spec.mlProgram.functions["main"]
        self.block = function.block_specializations[function.opset]
        self.input_names = [v.name for v in function.inputs]
        self.output_names = list(self.block.outputs)
        self._dtype_name = MIL_pb2.DataType.Name
        self._blobs: dict[str, bytes] = {}
        self.constants: dict[str, np.ndarray] = {}
        for op in self.block.operations:  # constants once, not per call
            if op.type == "const":
                self.constants[op.outputs[0].name] = self._value(op.attributes["val"])
            elif op.type == "constexpr_affine_dequantize":
                self.constants[op.outputs[0].name] = self._dequantize(op)

    # ---- stored values -------------------------------------------------------------------
    def _blob(self, file_name: str, offset: int, dtype, shape) -> np.ndarray:
        """Read one blob: a 64-byte header (sentinel, dtype, size, data offset) then the data."""
        path = self.package / "Data" / "com.apple.CoreML" / file_name.replace("@model_path/", "")
        if file_name not in self._blobs:
            self._blobs[file_name] = path.read_bytes()
        data = self._blobs[file_name]
        sentinel, _, size, start = struct.unpack_from("<IIQQ", data, offset)
        if sentinel != BLOB_SENTINEL:
            raise MILError(f"{path}: no blob header at offset {offset}")
        return np.frombuffer(data, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=start).reshape(shape)

    def _value(self, value) -> np.ndarray:
        tensor_type = value.type.tensorType
        name = self._dtype_name(tensor_type.dataType)
        shape = [d.constant.size for d in tensor_type.dimensions]
        if value.WhichOneof("value") == "blobFileValue":
            blob = value.blobFileValue
            return self._blob(blob.fileName, blob.offset, _NUMPY[name], shape)
        tensor = value.immediateValue.tensor
        kind = tensor.WhichOneof("value")
        if kind == "strings":
            values = list(tensor.strings.values)
            return np.array(values[0] if not shape else values, dtype=object)
        if kind == "bytes":  # small int8/uint8/fp16 tensors are stored as raw bytes
            return np.frombuffer(tensor.bytes.values, dtype=_NUMPY[name]).reshape(shape)
        values = list(getattr(tensor, kind).values)
        return np.array(values, dtype=_NUMPY.get(name, np.float32)).reshape(shape)

    def _dequantize(self, op) -> np.ndarray:
        """constexpr_affine_dequantize: real = scale * (q - zero_point) along ``axis``."""
        attrs = {k: self._value(v) for k, v in op.attributes.items() if k != "name"}
        q, zero, scale, axis = (attrs["quantized_data"], attrs["zero_point"], attrs["scale"], int(attrs["axis"]))
        shape = [1] * q.ndim
        if zero.ndim:
            shape[axis] = -1
        real = (q.astype(np.float32) - zero.astype(np.float32).reshape(shape if zero.ndim else ()))
        return (real * scale.astype(np.float32).reshape(shape if scale.ndim else ())).astype(np.float32)

    # ---- execution -----------------------------------------------------------------------
    def _args(self, op, env: dict) -> dict:
        args = {}
        for key, arg in op.inputs.items():
            values = [env[b.name] if b.WhichOneof("binding") == "name" else self._value(b.value)
                      for b in arg.arguments]
            args[key] = values if key == "values" else values[0]
        return args

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the program.

        Args:
            inputs: arrays by input name (e.g. ``{"input": float32 (1, 3, S, S)}``).

        Returns:
            Arrays by output name.

        Raises:
            MILError: an input is missing or an op is not implemented here.
        """
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise MILError(f"{self.package}: missing inputs {missing}")
        env = dict(self.constants)
        env.update({k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()})
        for op in self.block.operations:
            if op.outputs[0].name in env:
                continue
            kernel = _KERNELS.get(op.type)
            if kernel is None:
                raise MILError(f"{self.package}: op {op.type!r} is not implemented by the numpy evaluator")
            env[op.outputs[0].name] = kernel(**self._args(op, env))
        return {name: env[name] for name in self.output_names}


def _pads(pad_type, pad, size, kernel, stride, dilation):
    """(before, after) padding per spatial axis for MIL's valid/same/custom pad types."""
    pad_type = str(pad_type)
    if pad_type == "valid":
        return [(0, 0)] * len(size)
    if pad_type == "custom":
        flat = [int(p) for p in np.asarray(pad).ravel()]
        return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(size))]
    out = []
    for n, k, s, d in zip(size, kernel, stride, dilation):  # "same": output = ceil(n / s)
        total = max((int(np.ceil(n / s)) - 1) * s + (k - 1) * d + 1 - n, 0)
        out.append((total // 2, total - total // 2) if pad_type == "same" else (total - total // 2, total // 2))
    return out


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1, **_):
    weight = np.asarray(weight, dtype=np.float32)
    kernel = weight.shape[2:]
    strides = [int(s) for s in (strides if strides is not None else [1, 1])]
    dilations = [int(d) for d in (dilations if dilations is not None else [1, 1])]
    pads = _pads(pad_type, pad, x.shape[2:], kernel, strides, dilations)
    x = np.pad(x, [(0, 0), (0, 0), *pads])
    groups = int(groups)
    outs = []
    for g, (xg, wg) in enumerate(zip(np.split(x, groups, axis=1), np.split(weight, groups, axis=0))):
        span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        win = sliding_window_view(xg, span, axis=(2, 3))[:, :, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]
        outs.append(np.einsum("nchwij,ocij->nohw", win, wg, optimize=True))
    out = np.concatenate(outs, axis=1)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float32)[None, :, None, None]
    return out.astype(np.float32)


def _pool(x, kernel_sizes, strides, pad_type, pad=None, ceil_mode=False, reduce=np.max, fill=-np.inf, **_):
    kernel = [int(k) for k in kernel_sizes]
    strides = [int(s) for s in strides]
    pads = _pads(pad_type, pad, x.shape[2:], kernel, strides, [1, 1])
    if bool(ceil_mode):  # extra trailing padding so a last partial window counts (torch ceil_mode)
        extra = []
        for n, k, s, (lo, hi) in zip(x.shape[2:], kernel, strides, pads):
            span = n + lo + hi
            out = int(np.ceil((span - k) / s)) + 1
            if (out - 1) * s >= n + lo:  # torch: the last window must start inside the input
                out -= 1
            extra.append(max((out - 1) * s + k - span, 0))
        pads = [(lo, hi + e) for (lo, hi), e in zip(pads, extra)]
    x = np.pad(x, [(0, 0), (0, 0), *pads], constant_values=fill)
    win = sliding_window_view(x, kernel, axis=(2, 3))[:, :, ::strides[0], ::strides[1]]
    return reduce(win, axis=(-2, -1)).astype(np.float32)


def _concat(values, axis, interleave=False, **_):
    if bool(interleave):
        raise MILError("concat with interleave=True is not implemented")
    return np.concatenate(values, axis=int(axis))


def _reduce_mean(x, axes=None, keep_dims=False, **_):
    axes = None if axes is None else tuple(int(a) for a in np.asarray(axes).ravel())
    return np.mean(x, axis=axes, keepdims=bool(keep_dims), dtype=np.float32)


def _softmax(x, axis=-1, **_):
    e = np.exp(x - x.max(axis=int(axis), keepdims=True))
    return e / e.sum(axis=int(axis), keepdims=True)


_KERNELS = {
    "conv": _conv,
    "relu": lambda x, **_: np.maximum(x, 0),
    "max_pool": _pool,
    "avg_pool": lambda **kw: _pool(**{**kw, "reduce": np.mean, "fill": 0.0}),
    "concat": _concat,
    "reduce_mean": _reduce_mean,
    "reshape": lambda x, shape, **_: x.reshape([int(s) for s in np.asarray(shape).ravel()]),
    "expand_dims": lambda x, axes, **_: np.expand_dims(x, tuple(int(a) for a in np.asarray(axes).ravel())),
    "squeeze": lambda x, axes=None, **_: np.squeeze(x, None if axes is None else tuple(int(a) for a in np.asarray(axes).ravel())),
    "linear": lambda x, weight, bias=None, **_: x @ np.asarray(weight, np.float32).T + (0 if bias is None else bias),
    "add": lambda x, y, **_: x + y,
    "mul": lambda x, y, **_: x * y,
    "softmax": _softmax,
}


class CoreMLRunner:
    """Runs a ``.mlpackage`` through ``MILProgram`` with the same interface as the other runners."""

    def __init__(self, package: Path) -> None:
        self.program = MILProgram(package)

    def run_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (5,) and features (512,) for one preprocessed (3, S, S) image."""
        out = self.program.run({"input": image[None]})
        return out["logits"][0], out["features"][0]
