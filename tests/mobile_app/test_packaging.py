"""buildozer.spec holds what the phone needs (it cannot be built here: see docs/MOBILE.md)."""
import configparser
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest


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


def test_build_tools_are_pinned(spec):
    """p4a at a release tag (never a moving branch); the manifest test renders that release."""
    import re

    assert re.fullmatch(r"v\d{4}\.\d{2}\.\d{2}", spec["p4a.branch"]), spec["p4a.branch"]
    gradle = items(spec["android.gradle_dependencies"])
    assert all(re.fullmatch(r"[\w.]+:[\w.-]+:\d[\w.]*", g) for g in gradle), gradle     # every gradle artifact versioned
    assert any(g.startswith("com.google.zxing:core:") for g in gradle)           # reads the key's QR code
    assert "buildozer==1.6.0" in (ROOT / "docs" / "MOBILE.md").read_text(encoding="utf-8")


def test_the_builtin_key_file_ships_if_present(spec):
    assert "json" in items(spec["source.include_exts"])        # mobile_app/publisher_key.json goes into the APK
