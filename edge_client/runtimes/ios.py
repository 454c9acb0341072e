"""iOS adapter: Core ML through pyobjus. Imported only on iOS (``available()`` is False elsewhere).

The artifact is ``model_int8.mlpackage.zip`` (one file, one sha256): it is unzipped next to
itself, compiled once with ``MLModel.compileModelAtURL:error:`` and loaded. Input and outputs
go through ``MLMultiArray`` buffers copied with ctypes. Untested here (no Apple device or
macOS); the Core ML file itself is checked on Linux by the export tests, and the code above this
adapter is tested with the desktop runtimes.

Build: kivy-ios ``toolchain build python3 kivy numpy pillow requests pyobjus``; link CoreML.framework.
"""
from __future__ import annotations

import ctypes
import sys
import zipfile

import numpy as np

from edge_client.errors import RuntimeUnavailable
from edge_client.runtimes.base import Runtime

_ML_FLOAT32 = 65568  # MLMultiArrayDataTypeFloat32


class IOSCoreMLRuntime(Runtime):
    name = "ios-coreml"
    artifact_runtime = "coreml"

    @classmethod
    def available(cls) -> bool:
        if sys.platform != "ios":
            return False
        try:
            import pyobjus  # noqa: F401
        except Exception:
            return False
        return True

    def _load(self) -> None:
        try:
            from pyobjus import autoclass, objc_str
            from pyobjus.dylib_manager import load_framework

            load_framework("/System/Library/Frameworks/CoreML.framework")
            folder = self.path.with_suffix("")  # model_int8.mlpackage
            if not folder.exists():
                with zipfile.ZipFile(self.path) as zf:
                    zf.extractall(self.path.parent)
            url = autoclass("NSURL").fileURLWithPath_(objc_str(str(folder)))
            MLModel = autoclass("MLModel")
            self.model = MLModel.modelWithContentsOfURL_error_(MLModel.compileModelAtURL_error_(url, None), None)
            self._autoclass, self._objc_str = autoclass, objc_str
        except Exception as exc:
            raise RuntimeUnavailable(f"{self.path}: Core ML cannot load the model ({exc})") from None

    def _invoke(self, x: np.ndarray):
        autoclass, objc_str = self._autoclass, self._objc_str
        NSNumber = autoclass("NSNumber")
        shape = autoclass("NSMutableArray").alloc().init()
        for dim in x.shape:
            shape.addObject_(NSNumber.numberWithInt_(int(dim)))
        array = autoclass("MLMultiArray").alloc().initWithShape_dataType_error_(shape, _ML_FLOAT32, None)
        data = np.ascontiguousarray(x, dtype=np.float32)
        ctypes.memmove(array.dataPointer().arg_ref, data.ctypes.data, data.nbytes)
        name = self.input_spec.get("name", "x")
        feats = autoclass("MLDictionaryFeatureProvider").alloc().initWithDictionary_error_(
            {objc_str(name): autoclass("MLFeatureValue").featureValueWithMultiArray_(array)}, None)
        result = self.model.predictionFromFeatures_error_(feats, None)
        arrays, names = [], []
        for spec in self.output_specs:
            out = result.featureValueForName_(objc_str(spec["name"])).multiArrayValue()
            count = int(np.prod(spec["shape"]))
            buf = (ctypes.c_float * count).from_address(out.dataPointer().arg_ref)
            arrays.append(np.array(buf, dtype=np.float32).reshape(spec["shape"]))
            names.append(spec["name"])
        return arrays, names
