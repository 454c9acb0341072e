"""LiteRT (TFLite) on desktop through ``ai-edge-litert``: the int8 model's runtime in tests."""
from __future__ import annotations

import os

import numpy as np

from edge_client.errors import RuntimeUnavailable
from edge_client.runtimes.base import Runtime


class LiteRTRuntime(Runtime):
    name = "litert"
    artifact_runtime = "litert"

    @classmethod
    def available(cls) -> bool:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except Exception:
            return False
        return True

    def _load(self) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter

            threads = int(os.environ.get("EDGE_THREADS", "0")) or None
            self.interp = Interpreter(model_path=str(self.path), num_threads=threads)
            self.interp.allocate_tensors()
        except Exception as exc:  # the runtime raises ValueError/RuntimeError on a bad file
            raise RuntimeUnavailable(f"{self.path}: LiteRT cannot load the model ({exc})") from None
        self.inp = self.interp.get_input_details()[0]
        self.outs = self.interp.get_output_details()

    def _fallback_quant(self):
        def q(detail):
            scale, zp = detail.get("quantization", (0.0, 0))
            return (scale, zp) if scale else None
        return q(self.inp), [q(o) for o in self.outs]

    def _invoke(self, x: np.ndarray):
        self.interp.set_tensor(self.inp["index"], x.astype(self.inp["dtype"], copy=False))
        self.interp.invoke()
        return [self.interp.get_tensor(o["index"]) for o in self.outs], None
