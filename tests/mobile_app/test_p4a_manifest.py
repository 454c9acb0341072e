"""The Android build's manifest, made the way the real build makes it.

Installs the python-for-android release that buildozer.spec pins (from PyPI, into a cached
target folder), lays out its sdl2 bootstrap as p4a does, renders its own AndroidManifest
template with this app's buildozer.spec values through its own build.py, runs our p4a hook on
the result (with p4a's arguments, as p4a calls it) and checks the FileProvider, the camera
capture intent, the optional camera and the resources the provider names. (The APK itself
cannot be built here: no Android SDK/NDK; docs/MOBILE.md.)
"""
from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest


ROOT = Path(__file__).resolve().parents[2]
ANDROID = "{http://schemas.android.com/apk/res/android}"
CACHE_ROOT = Path(os.environ.get("DOPAMINE_TEST_CACHE") or Path.home() / ".cache" / "dopamine-tests")


@pytest.fixture(scope="module")
def spec():
    cp = configparser.ConfigParser()
    cp.read(ROOT / "buildozer.spec", encoding="utf-8")
    return cp["app"]


def pinned_p4a_version(spec) -> str:
    """buildozer.spec pins a release tag vYYYY.MM.DD; PyPI spells the same release YYYY.M.D."""
    tag = spec["p4a.branch"]
    assert tag.startswith("v") and tag.count(".") == 2, f"p4a.branch {tag!r} is not a release tag"
    return ".".join(str(int(part)) for part in tag[1:].split("."))


def test_the_setup_installs_the_release_buildozer_spec_pins(spec):
    pins = [line.strip() for line in (ROOT / "requirements-android-build.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins == [f"python-for-android=={pinned_p4a_version(spec)}"]


@pytest.fixture(scope="module")
def p4a(spec) -> Path:
    """python-for-android==<pinned> and its dependencies in a target folder: the one scripts/setup.sh
    installed (.venv/p4a), else downloaded once into a cache (a checkout without the setup)."""
    version = pinned_p4a_version(spec)
    target = ROOT / ".venv" / "p4a"
    if not (target / "pythonforandroid" / "__init__.py").is_file():
        target = CACHE_ROOT / f"python-for-android-{version}"
    if not (target / "pythonforandroid" / "__init__.py").is_file():
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--no-input", "--target", str(tmp), f"python-for-android=={version}"],
                           capture_output=True, text=True, timeout=500)
        assert r.returncode == 0, f"pip could not install python-for-android=={version}:\n{r.stderr[-3000:]}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    installed = (target / "pythonforandroid" / "__init__.py").read_text()
    assert f"__version__ = '{version.split('.')[0]}." in installed
    return target


def buildozer_args(spec) -> list[str]:
    """The build.py arguments buildozer 1.6.0 makes from buildozer.spec (the ones the manifest uses;
    p4a's toolchain consumes --ndk-api itself and hands the rest, these, to build.py)."""
    args = ["--name", spec["title"], "--version", spec["version"],
            "--package", f"{spec['package.domain']}.{spec['package.name']}",
            "--minsdk", spec["android.minapi"], "--private", str(ROOT)]
    for permission in (p.strip() for p in spec["android.permissions"].split(",") if p.strip()):
        args += ["--permission", permission]
    args += ["--android-entrypoint", "org.kivy.android.PythonActivity",
             "--android-apptheme", "@android:style/Theme.NoTitleBar"]
    for orientation in (o.strip() for o in spec["orientation"].split(",")):
        args += ["--orientation", orientation]
    if spec.get("fullscreen", "1").strip() in ("0", "False", "false"):
        args.append("--window")
    args += ["--extra-manifest-xml", (ROOT / spec["android.extra_manifest_xml"]).read_text(encoding="utf-8")]
    if spec.get("android.allow_backup", "True").strip() in ("False", "false", "0"):
        args += ["--allow-backup", "false"]
    return args


def make_dist(p4a: Path, dist: Path, spec) -> None:
    """The dist folder p4a prepares for the sdl2 bootstrap, plus our resources (--add-resource)."""
    boots = p4a / "pythonforandroid" / "bootstraps"
    for part in ("common", "_sdl_common", "sdl2"):          # p4a's Bootstrap.get_bootstrap_dirs order
        shutil.copytree(boots / part / "build", dist, dirs_exist_ok=True)
    (dist / "dist_info.json").write_text(json.dumps({
        "dist_name": spec["package.name"], "bootstrap": "sdl2", "archs": ["arm64-v8a"],
        "ndk_api": int(spec["android.minapi"]), "hostpython": sys.executable, "python_version": "3.11",
        "recipes": ["python3", "kivy"], "use_setup_py": False}))
    for resource in spec["android.add_resources"].split(","):     # build.py's --resource copy
        src, dest = resource.strip().split(":")
        (dist / "src" / "main" / "res" / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / src, dist / "src" / "main" / "res" / dest)


def load_hook(spec):
    module_spec = importlib.util.spec_from_file_location("p4a_hook", ROOT / spec["p4a.hook"])
    hook = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(hook)
    return hook


def test_pinned_p4a_manifest_gets_the_provider_and_intents(p4a, spec, tmp_path):
    dist = tmp_path / "dist"
    make_dist(p4a, dist, spec)
    argv = buildozer_args(spec)
    (tmp_path / "args.json").write_text(json.dumps(argv))
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(p4a), "ANDROID_API": spec["android.api"],
           "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-B", str(ROOT / "tests/mobile_app/p4a_render.py"),
                        str(dist), str(tmp_path / "args.json")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    manifest = dist / "src" / "main" / "AndroidManifest.xml"
    rendered = manifest.read_text()
    assert 'package="' not in rendered     # why the old hook crashed: the template no longer writes it

    # p4a calls the hook with its ToolchainCL: the build arguments are in args.unknown_args
    hook = load_hook(spec)
    toolchain = SimpleNamespace(args=SimpleNamespace(unknown_args=list(argv)), _dist=SimpleNamespace(dist_dir=str(dist)))
    hook.before_apk_assemble(toolchain)
    hook.before_apk_assemble(toolchain)                  # idempotent: gradle may be re-run
    root = ET.parse(manifest).getroot()

    package = f"{spec['package.domain']}.{spec['package.name']}"
    providers = root.findall("application/provider")
    assert len(providers) == 1
    provider = providers[0]
    assert provider.get(f"{ANDROID}name") == "androidx.core.content.FileProvider"
    assert provider.get(f"{ANDROID}authorities") == f"{package}.fileprovider"   # what pickers/android.py asks for
    assert provider.get(f"{ANDROID}exported") == "false" and provider.get(f"{ANDROID}grantUriPermissions") == "true"
    meta = provider.find("meta-data")
    assert meta.get(f"{ANDROID}name") == "android.support.FILE_PROVIDER_PATHS"
    resource = meta.get(f"{ANDROID}resource")
    assert resource == "@xml/dopamine_file_paths"
    paths = ET.parse(dist / "src/main/res/xml/dopamine_file_paths.xml").getroot()
    assert {(p.tag, p.get("path")) for p in paths} == {("cache-path", "photos/"), ("cache-path", "exports/")}

    # the camera capture intent is visible (Android 11+), the camera optional, CAMERA requested
    queries = root.findall("queries/intent/action")
    assert [q.get(f"{ANDROID}name") for q in queries] == ["android.media.action.IMAGE_CAPTURE"]
    features = {f.get(f"{ANDROID}name"): f.get(f"{ANDROID}required") for f in root.findall("uses-feature")
                if f.get(f"{ANDROID}name")}
    assert features == {"android.hardware.camera": "false", "android.hardware.camera.autofocus": "false"}
    permissions = {p.get(f"{ANDROID}name") for p in root.findall("uses-permission")}
    assert permissions == {"android.permission.INTERNET", "android.permission.ACCESS_NETWORK_STATE",
                           "android.permission.CAMERA"}

    # the launcher activity, the app's settings from buildozer.spec
    activity = root.find("application/activity")
    assert activity.get(f"{ANDROID}name") == "org.kivy.android.PythonActivity"
    actions = {a.get(f"{ANDROID}name") for a in activity.findall("intent-filter/action")}
    assert "android.intent.action.MAIN" in actions
    assert activity.get(f"{ANDROID}screenOrientation") == "portrait"
    application = root.find("application")
    assert application.get(f"{ANDROID}allowBackup") == "false"        # no patient data in cloud backups
    assert root.find("uses-sdk").get(f"{ANDROID}minSdkVersion") == spec["android.minapi"]
    assert root.get(f"{ANDROID}versionName") == spec["version"]


def test_hook_refuses_a_build_without_package(spec, tmp_path):
    hook = load_hook(spec)
    manifest = tmp_path / "src" / "main" / "AndroidManifest.xml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('<manifest xmlns:android="http://schemas.android.com/apk/res/android"><application>'
                        '</application></manifest>')
    toolchain = SimpleNamespace(args=SimpleNamespace(unknown_args=["--name", "Dopamine"]),
                                _dist=SimpleNamespace(dist_dir=str(tmp_path)))
    with pytest.raises(hook.HookError, match="no --package"):
        hook.before_apk_assemble(toolchain)
    assert "provider" not in manifest.read_text()                  # nothing half-written
    assert hook.package_from_args(["--package=org.x.y"]) == "org.x.y"
