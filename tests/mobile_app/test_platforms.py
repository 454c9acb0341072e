"""Which runtime and picker the app uses on each platform, decided the way kivy-ios and
python-for-android expect: from `kivy.utils.platform` (kivy-ios's Python says sys.platform ==
"darwin" on an iPhone, which is why runtimes/ios.py never loaded before)."""
import sys
import types

import pytest


ARTIFACTS = [
    {"name": "model_int8.tflite", "runtime": "litert", "precision": "int8"},
    {"name": "model_int8.onnx", "runtime": "onnxruntime", "precision": "int8"},
    {"name": "model_int8.mlpackage.zip", "runtime": "coreml", "precision": "int8"},
]


@pytest.fixture
def on_ios(monkeypatch):
    """kivy.utils.platform says "ios", and pyobjus (kivy-ios's bridge) can be imported."""
    import kivy.utils

    from edge_client.runtimes import set_platform

    monkeypatch.setattr(kivy.utils, "platform", "ios")
    bridge = types.ModuleType("pyobjus")
    bridge.autoclass = bridge.objc_str = bridge.protocol = lambda *a, **k: (lambda f: f)
    manager = types.ModuleType("pyobjus.dylib_manager")
    manager.load_framework = lambda path: None
    monkeypatch.setitem(sys.modules, "pyobjus", bridge)
    monkeypatch.setitem(sys.modules, "pyobjus.dylib_manager", manager)
    yield
    set_platform(None)


def test_ios_selects_core_ml_when_kivy_says_ios(on_ios, monkeypatch):
    from edge_client.runtimes import available_runtimes, current_platform, select_runtime
    from edge_client.runtimes.ios import IOSCoreMLRuntime
    from mobile_app.app import announce_platform

    monkeypatch.setattr(sys, "platform", "darwin")          # what kivy-ios's Python reports
    assert announce_platform() == "ios" and current_platform() == "ios"
    assert available_runtimes()[0] is IOSCoreMLRuntime
    runtime, artifact = select_runtime(ARTIFACTS)
    assert runtime is IOSCoreMLRuntime and artifact["name"] == "model_int8.mlpackage.zip"


def test_kivy_ios_build_signal_without_the_app(monkeypatch):
    from edge_client.runtimes import current_platform, set_platform

    set_platform(None)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.delenv("KIVY_BUILD", raising=False)
    assert current_platform() == "macosx"                    # a Mac is not an iPhone
    monkeypatch.setenv("KIVY_BUILD", "ios")                  # kivy-ios's toolchain sets it
    assert current_platform() == "ios"
    monkeypatch.setenv("KIVY_BUILD", "android")
    assert current_platform() == "android"
    with pytest.raises(ValueError, match="android, ios"):
        set_platform("iphone")


def test_a_desktop_keeps_its_runtimes():
    from edge_client.runtimes import available_runtimes, select_runtime, set_platform
    from mobile_app.app import announce_platform

    assert announce_platform() == "linux"
    try:
        assert "ios-coreml" not in [r.name for r in available_runtimes()]
        assert select_runtime(ARTIFACTS)[1]["runtime"] in ("litert", "onnxruntime")
    finally:
        set_platform(None)


def test_ios_picker_is_chosen_on_ios(on_ios, tmp_path):
    from mobile_app.pickers import default_picker
    from mobile_app.pickers.ios import IOSPicker

    picker = default_picker(tmp_path)
    assert isinstance(picker, IOSPicker) and picker.cache_dir.name == "photos"
