"""buildozer.spec holds what the phone needs (it cannot be built here: see docs/MOBILE.md)."""
import configparser
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec():
    cp = configparser.ConfigParser()
    cp.read(ROOT / "buildozer.spec", encoding="utf-8")
    return cp["app"]


def items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def test_requirements(spec):
    names = {r.split("==")[0] for r in items(spec["requirements"])}
    assert {"python3", "kivy", "numpy", "pillow", "requests", "certifi", "sqlite3", "pyjnius", "pynacl"} <= names
    assert not names & {"torch", "onnxruntime", "ai-edge-litert", "opacus"}   # server-side only


def test_permissions_are_the_needed_ones(spec):
    assert items(spec["android.permissions"]) == ["INTERNET", "ACCESS_NETWORK_STATE", "CAMERA"]


def test_gradle_and_resources(spec):
    gradle = items(spec["android.gradle_dependencies"])
    assert any(g.startswith("org.tensorflow:tensorflow-lite:") for g in gradle)
    assert any(g.startswith("androidx.core:core:") for g in gradle)
    src = spec["android.add_resources"].split(":")[0]
    ET.parse(ROOT / src)                                    # well-formed
    assert (ROOT / spec["p4a.hook"]).is_file()
    assert (ROOT / "main.py").is_file()
    excluded = set(items(spec["source.exclude_dirs"]))
    assert {"trainer", "export", "hub", "tests"} <= excluded


def test_p4a_hook_inserts_the_provider_once(tmp_path):
    import importlib.util
    from types import SimpleNamespace

    spec_ = importlib.util.spec_from_file_location("hook", ROOT / "mobile_app/android/p4a_hook.py")
    hook = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(hook)
    manifest = tmp_path / "src" / "main" / "AndroidManifest.xml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('<manifest xmlns:android="http://schemas.android.com/apk/res/android" '
                        'package="org.dopamine.dopamine"><application></application></manifest>')
    tc = SimpleNamespace(_dist=SimpleNamespace(dist_dir=str(tmp_path)))
    hook.before_apk_assemble(tc)
    hook.before_apk_assemble(tc)
    text = manifest.read_text()
    assert text.count("androidx.core.content.FileProvider") == 1
    assert 'android:authorities="org.dopamine.dopamine.fileprovider"' in text
    ET.fromstring(text)
