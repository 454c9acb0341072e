"""ONNX Runtime on desktop (``onnxruntime``): runs the fp32 or QDQ int8 ONNX artifact."""
from __future__ import annotations

import os

import numpy as np

from edge_client.errors import RuntimeUnavailable
from edge_client.runtimes.base import Runtime


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    artifact_runtime = "onnxruntime"

    @classmethod
    def available(cls) -> bool:
        try:
            import onnxruntime  # noqa: F401
        except Exception:
            return False
        return True

    def _load(self) -> None:
        try:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            threads = int(os.environ.get("EDGE_THREADS", "0"))
            if threads:
                opts.intra_op_num_threads = threads
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise RuntimeUnavailable(f"{self.path}: ONNX Runtime cannot load the model ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _invoke(self, x: np.ndarray):
        return self.session.run(None, {self.input_name: x}), self.output_names
