"""Android adapter: the TFLite Java runtime (``org.tensorflow.lite.Interpreter``) through pyjnius.

Thin by design and imported only on Android (``select_runtime`` checks ``available()`` first;
``jnius`` is imported inside methods). It cannot run here (no Android), so everything above it
is tested with the desktop LiteRT runtime on the same ``.tflite`` file and the same
quantization glue (``base.prepare_input`` / ``split_outputs``).

Build: buildozer.spec needs ``android.gradle_dependencies = org.tensorflow:tensorflow-lite:2.16.1``
and ``requirements = python3,kivy,numpy,pillow,requests,pyjnius``.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from edge_client.errors import RuntimeUnavailable
from edge_client.runtimes.base import Runtime

_NP_DTYPES = {"FLOAT32": np.float32, "INT8": np.int8, "UINT8": np.uint8}


def on_android() -> bool:
    return sys.platform == "android" or "ANDROID_ARGUMENT" in os.environ


class AndroidTFLiteRuntime(Runtime):
    name = "android-tflite"
    artifact_runtime = "litert"

    @classmethod
    def available(cls) -> bool:
        if not on_android():
            return False
        try:
            from jnius import autoclass

            autoclass("org.tensorflow.lite.Interpreter")
        except Exception:
            return False
        return True

    def _load(self) -> None:
        try:
            from jnius import autoclass

            self._ByteBuffer = autoclass("java.nio.ByteBuffer")
            self._order = autoclass("java.nio.ByteOrder").nativeOrder()
            self._HashMap = autoclass("java.util.HashMap")
            self._Integer = autoclass("java.lang.Integer")
            self.interp = autoclass("org.tensorflow.lite.Interpreter")(autoclass("java.io.File")(str(self.path)))
        except Exception as exc:
            raise RuntimeUnavailable(f"{self.path}: TFLite (Java) cannot load the model ({exc})") from None
        self.n_out = self.interp.getOutputTensorCount()

    def _fallback_quant(self):
        def q(tensor):
            params = tensor.quantizationParams()
            return (params.getScale(), params.getZeroPoint()) if params.getScale() else None
        return q(self.interp.getInputTensor(0)), [q(self.interp.getOutputTensor(i)) for i in range(self.n_out)]

    def _invoke(self, x: np.ndarray):
        inp = self._ByteBuffer.allocateDirect(x.nbytes).order(self._order)
        inp.put(x.astype(x.dtype.newbyteorder("=")).tobytes())
        inp.rewind()
        buffers, outputs = [], self._HashMap()
        for i in range(self.n_out):
            buf = self._ByteBuffer.allocate(self.interp.getOutputTensor(i).numBytes()).order(self._order)
            buffers.append(buf)
            outputs.put(self._Integer(i), buf)
        self.interp.runForMultipleInputsOutputs([inp], outputs)
        arrays = []
        for i, buf in enumerate(buffers):
            tensor = self.interp.getOutputTensor(i)
            raw = bytes(b & 0xFF for b in buf.array())  # Java bytes are signed
            dtype = _NP_DTYPES[tensor.dataType().name()]
            arrays.append(np.frombuffer(raw, dtype=dtype).reshape(list(tensor.shape())))
        return arrays, None
