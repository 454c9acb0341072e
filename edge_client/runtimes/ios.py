"""iOS adapter: Core ML through pyobjus. ``available()`` is True only on iOS with pyobjus importable.

kivy-ios's Python reports ``sys.platform == "darwin"`` on an iPhone, so the platform comes from
``edge_client.runtimes.current_platform()`` (what the app passed from ``kivy.utils.platform``,
else kivy-ios's ``KIVY_BUILD=ios``), never from ``sys.platform`` alone.

The artifact is ``model_int8.mlpackage.zip`` (one file, one sha256). Where the model store
unpacks it at install (``models/<n>/model_int8.mlpackage/``, re-verified file by file each time
the store loads the model) that folder is used; otherwise each load unzips the verified zip
afresh into a new private folder (``extract_package``: no member may leave it, at most 64 MB),
so a stale or altered copy of an older extraction is never used. Core ML then compiles it with
``MLModel.compileModelAtURL:error:``. Input and outputs
go through ``MLMultiArray`` buffers copied with ctypes. Untested here (no Apple device or
macOS); the Core ML file itself is checked on Linux by the export tests, and the code above this
adapter is tested with the desktop runtimes.

Build: kivy-ios ``toolchain build python3 kivy numpy pillow requests pyobjus``; link CoreML.framework.
"""
from __future__ import annotations

import ctypes
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from edge_client.errors import RuntimeUnavailable
from edge_client.runtimes.base import Runtime

_ML_FLOAT32 = 65568  # MLMultiArrayDataTypeFloat32
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024


def extract_package(zip_path: str | Path, parent: str | Path) -> Path:
    """Unzip a ``.mlpackage.zip`` into a new folder under ``parent`` and return the package folder.

    Args:
        zip_path: the verified artifact. parent: where the new private folder is made.

    Returns:
        ``<new folder>/<name>.mlpackage``.

    Raises:
        RuntimeUnavailable: not a zip, a member with an absolute path or "..", over
        MAX_UNZIPPED_BYTES, or no ``.mlpackage`` folder inside. Nothing is left behind then.
    """
    zip_path = Path(zip_path)
    folder = Path(tempfile.mkdtemp(prefix=".coreml-", dir=parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = zf.infolist()
            for m in members:
                parts = PurePosixPath(m.filename).parts
                if m.filename.startswith(("/", "\\")) or ".." in parts or ":" in m.filename:
                    raise RuntimeUnavailable(f"{zip_path}: member {m.filename!r} would leave its folder: refused")
            if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
                raise RuntimeUnavailable(f"{zip_path}: unzips to over {MAX_UNZIPPED_BYTES // 2**20} MB: refused")
            zf.extractall(folder)
        packages = sorted(p for p in folder.iterdir() if p.suffix == ".mlpackage" and p.is_dir())
        if not packages:
            raise RuntimeUnavailable(f"{zip_path}: no .mlpackage folder inside")
        return packages[0]
    except (zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeUnavailable(f"{zip_path}: not a readable Core ML zip ({exc})") from None
    except RuntimeUnavailable:
        shutil.rmtree(folder, ignore_errors=True)
        raise


class IOSCoreMLRuntime(Runtime):
    name = "ios-coreml"
    artifact_runtime = "coreml"

    @classmethod
    def available(cls) -> bool:
        from edge_client.runtimes import current_platform  # the package imports this module

        if current_platform() != "ios":
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
            package = self.path.with_suffix("")        # models/<n>/model_int8.mlpackage
            if not package.is_dir():                   # a store that does not unpack at install
                for old in self.path.parent.glob(".coreml-*"):   # earlier loads' copies
                    shutil.rmtree(old, ignore_errors=True)
                package = extract_package(self.path, self.path.parent)
            url = autoclass("NSURL").fileURLWithPath_(objc_str(str(package)))
            MLModel = autoclass("MLModel")
            self.model = MLModel.modelWithContentsOfURL_error_(MLModel.compileModelAtURL_error_(url, None), None)
            self._autoclass, self._objc_str = autoclass, objc_str
        except RuntimeUnavailable:
            raise
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
