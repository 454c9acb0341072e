"""Test bundles and a real hub process, shared by tests/hub and tests/edge_client.

A bundle is what `python -m export all` writes (manifest.json, manifest.sig, artifacts); here it
is built from a small fp32 ONNX export of the real model (32 px), signed with PyNaCl.
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from nacl.signing import SigningKey

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
SIZE = 32


def make_keys(folder: Path, seed: bytes | None = None) -> tuple[SigningKey, Path]:
    """A key pair as export writes it: private.key / public.key, base64 raw 32 bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    sk = SigningKey(seed) if seed else SigningKey.generate()
    (folder / "private.key").write_text(base64.b64encode(bytes(sk)).decode() + "\n")
    (folder / "public.key").write_text(base64.b64encode(bytes(sk.verify_key)).decode() + "\n")
    return sk, folder / "public.key"


def export_onnx(path: Path, size: int = SIZE) -> Path:
    """fp32 ONNX of LogitsAndFeatures(build_model()) with one weights file (torch needed)."""
    import torch

    from trainer.model import LogitsAndFeatures, build_model

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = LogitsAndFeatures(build_model()).eval()
    torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), input_names=["input"],
                      output_names=["logits", "features"], dynamo=True, external_data=False)
    return path


_CACHE: dict[int, Path] = {}


def cached_onnx(folder: Path, size: int = SIZE) -> Path:
    """One export per test session, shared by tests/hub and tests/edge_client."""
    if size not in _CACHE or not _CACHE[size].exists():
        _CACHE[size] = export_onnx(folder / f"model{size}.onnx", size)
    return _CACHE[size]


def write_bundle(dist: Path, *, version: int, model_file: Path, key: SigningKey, size: int = SIZE,
                 name: str = "model_fp32.onnx") -> Path:
    """Write a signed bundle with one ONNX artifact."""
    dist.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, dist / name)
    data = (dist / name).read_bytes()
    manifest = {
        "schema_version": 1, "model_version": version, "created": "2026-11-28T18:00:00Z",
        "arch": "squeezenet1_1-dr",
        "class_names": ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"],
        "input_size": size,
        "preprocess": {"image_size": size, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                       "crop_threshold": 10.0, "max_pixels": 40_000_000},
        "quality": {"min_fundus_fraction": 0.25, "min_brightness": 20.0, "max_brightness": 235.0,
                    "min_sharpness": 5.0},
        "referral": {"refer_at_grade": 2, "min_confidence": 0.6},
        "training": {"mode": "dopamine", "rounds": 3, "hospitals": 3},
        "privacy": {"epsilon": 9.8, "delta": 1e-05, "accountant": "rdp", "privacy_model": "patient-level"},
        "metrics": {"test": {"accuracy": 0.5, "kappa": 0.1}},
        "artifacts": [{
            "name": name, "format": "onnx", "runtime": "onnxruntime", "precision": "fp32",
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "inputs": [{"name": "input", "layout": "NCHW", "dtype": "float32", "shape": [1, 3, size, size]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, 5]},
                        {"name": "features", "dtype": "float32", "shape": [1, 512]}]}],
    }
    raw = json.dumps(manifest, indent=2).encode()
    (dist / "manifest.json").write_bytes(raw)
    (dist / "manifest.sig").write_text(base64.b64encode(key.sign(raw).signature).decode() + "\n")
    return dist


def run_cli(module: str, *args, env: dict | None = None, timeout: float = 120, preexec_fn=None):
    """Run `python -m module args` from the repo root; returns CompletedProcess (text)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([PY, "-m", module, *map(str, args)], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=preexec_fn)


class HubProcess:
    """`python -m hub serve` on 127.0.0.1, port 0; stopped by PID."""

    def __init__(self, root: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([PY, "-m", "hub", "serve", "--root", str(root), "--host", "127.0.0.1",
                                      "--port", "0", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "serving" not in line:
            self.stop()
            raise RuntimeError(f"hub did not start: {line} {self.proc.stderr.read()}")
        self.url = line.split()[2]
        self._wait_ready()

    def _wait_ready(self) -> None:
        import requests

        for _ in range(100):
            try:
                requests.get(self.url + "/healthz", timeout=1, verify=False)
                return
            except requests.RequestException:
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self) -> "HubProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def init_hub(root: Path, public_key: Path, *extra, private_key: Path | None = None) -> Path:
    """`python -m hub init` plus `hub delegate` (devices refuse a hub without a signed model list).

    Args:
        root: the new hub folder. public_key: the publisher's public.key. extra: more `hub init`
        flags. private_key: the publisher's private.key (default: private.key beside public_key);
        it signs the delegation only and is not kept by the hub.
    """
    r = run_cli("hub", "init", "--root", root, "--publisher-key", public_key, *extra)
    assert r.returncode == 0, r.stderr
    r = run_cli("hub", "delegate", "--root", root, "--signing-key", private_key or Path(public_key).parent / "private.key")
    assert r.returncode == 0, r.stderr
    return root


def fake_update(base_version: int, *, seed: int, norm: float = 3.0, noise_multiplier: float = 2.0,
                sample_rate: float = 0.5, steps: int = 50, delta: float = 1e-5) -> dict:
    """A device update with consistent public constants and a random head change of L2 norm ``norm``.

    Plumbing for hub tests that need many distinct, well-formed updates without training: its ε
    is the RDP ε of its own σ, q and steps (what a device declares after one round).
    """
    import numpy as np

    from edge_client.rdp import compute_epsilon

    rng = np.random.default_rng(seed)
    change = rng.standard_normal(5 * 512 + 5)
    change *= norm / np.linalg.norm(change)
    epsilon = compute_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta)
    return {"format": "dopamine-head-update", "format_version": 1, "base_version": base_version,
            "created": "2026-11-28T18:00:00Z", "delta_weight": change[:2560].reshape(5, 512).tolist(),
            "delta_bias": change[2560:].tolist(), "steps": steps, "epsilon": epsilon + 1e-9, "delta": delta,
            "accountant": "rdp", "noise_multiplier": noise_multiplier, "sample_rate": sample_rate,
            "batch_divisor": 16.0, "clipping_norm": 1.0, "learning_rate": 0.1, "epsilon_budget": 10.0,
            "max_patients": 10_000, "seeded": False}


class StaticMirror:
    """A plain static HTTP server over a folder (what anyone can run with copies of a hub's public files)."""

    def __init__(self, folder: Path) -> None:
        import functools
        import threading

        handler = functools.partial(_QuietFiles, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "StaticMirror":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


def mirror_copy(hub_url: str, folder: Path, versions: dict[int, list[str]]) -> Path:
    """Copy a hub's public files into ``folder`` under the same URL paths (a mirror's snapshot).

    Args:
        versions: {version: [artifact names]} to copy with their manifests.
    """
    import requests

    paths = ["/v1/root.json", "/v1/root.sig", "/v1/index.json", "/v1/index.sig"]
    for version, names in versions.items():
        paths += [f"/v1/versions/{version}/manifest", f"/v1/versions/{version}/manifest.sig"]
        paths += [f"/v1/artifacts/{version}/{name}" for name in names]
    signed = {}
    for path in paths:
        r = requests.get(hub_url + path, timeout=30)
        assert r.status_code == 200, (path, r.status_code)
        if path.endswith(".json") and "X-Signature" in r.headers:  # keep each document with ITS signature
            signed[path[:-5] + ".sig"] = r.headers["X-Signature"].encode() + b"\n"
        target = folder / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(signed.get(path, r.content))
    return folder


def resign_as_version(dist: Path, out: Path, private_key: Path, version: int) -> Path:
    """A copy of a signed bundle as the next version, signed again by the same publisher (what
    `export all --version N` would write for the same weights, without re-exporting)."""
    shutil.copytree(dist, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["model_version"] = version
    raw = json.dumps(manifest, indent=2).encode()
    (out / "manifest.json").write_bytes(raw)
    key = SigningKey(base64.b64decode(private_key.read_text().strip()))
    (out / "manifest.sig").write_text(base64.b64encode(key.sign(raw).signature).decode() + "\n")
    return out
