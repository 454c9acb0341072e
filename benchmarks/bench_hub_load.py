"""Hub under load: N simulated devices sync and upload at once against `python -m hub serve` on loopback.

    python benchmarks/bench_hub_load.py [--devices 50] [--artifact-mb 1]

Each device is a thread running the real device code: ``edge_client.sync.sync`` (signed root and
model list, manifest, artifact download, sha256, atomic install) into its own EDGE_HOME, then one
upload of a well-formed head update with its own token (the bytes ``UpdateQueue.upload`` sends).
All start together behind a barrier. Checks: no 5xx, every device installed the version, every
upload stored exactly once (one pending row per token). Prints p50/p99 per request kind, the
requests per second over the whole run and the machine's load average (timings on a shared
machine are inflated: quote the load with them). Not collected by pytest.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bundle(work: Path, megabytes: float):
    """A signed bundle with one LiteRT-named artifact of random bytes (the hub never parses it)."""
    from tests.helpers.bundles import make_keys, write_bundle

    sk, public = make_keys(work / "keys")
    blob = work / "model_int8.tflite"
    blob.write_bytes(os.urandom(int(megabytes * 1e6)))
    dist = write_bundle(work / "dist", version=1, model_file=blob, key=sk, name="model_int8.tflite")
    manifest = json.loads((dist / "manifest.json").read_bytes())
    manifest["artifacts"][0].update(format="tflite", runtime="litert", precision="int8")
    data = json.dumps(manifest, indent=2).encode()
    (dist / "manifest.json").write_bytes(data)
    import base64

    (dist / "manifest.sig").write_text(base64.b64encode(sk.sign(data).signature).decode() + "\n")
    return dist, public


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--artifact-mb", type=float, default=1.0, help="artifact size (the int8 model is ~0.85 MB)")
    args = p.parse_args()
    import requests

    from edge_client.fetcher import Fetcher
    from edge_client.manifest import read_public_key
    from edge_client.store import ModelStore
    from edge_client.sync import sync
    from tests.helpers.bundles import HubProcess, fake_update, init_hub, run_cli
    from hub.registry import Registry

    work = Path(tempfile.mkdtemp(prefix="bench_hub_load_"))
    dist, public = _bundle(work, args.artifact_mb)
    root = init_hub(work / "hub", public, "--min-updates", "100000")
    assert run_cli("hub", "publish", dist, "--root", root).returncode == 0
    reg = Registry(root)
    tokens = [reg.issue_token(f"device-{i}") for i in range(args.devices)]
    reg.close()
    bodies = [json.dumps(fake_update(1, seed=i), separators=(",", ":")).encode() for i in range(args.devices)]
    key = read_public_key(public)

    timings: dict[str, list[float]] = defaultdict(list)
    statuses: dict[int, int] = defaultdict(int)
    failures: list[str] = []
    lock = threading.Lock()

    class TimedFetcher(Fetcher):
        def get_small(self, path, **kw):
            start = time.perf_counter()
            status, body, headers = super().get_small(path, **kw)
            kind = "manifest" if "/manifest" in path else path.rsplit("/", 1)[-1].split(".")[0]
            with lock:
                timings[kind].append(time.perf_counter() - start)
                statuses[status] += 1
            return status, body, headers

        def download(self, path, dest, **kw):
            start = time.perf_counter()
            got = super().download(path, dest, **kw)
            with lock:
                timings["artifact"].append(time.perf_counter() - start)
                statuses[200] += 1
            return got

    def device(i: int, barrier: threading.Barrier, url: str) -> None:
        barrier.wait()
        try:
            result = sync(ModelStore(work / "devices" / str(i)), url, public_key=key, fetcher=TimedFetcher(url))
            if result.version != 1:
                raise RuntimeError(f"installed {result.version}")
            start = time.perf_counter()
            r = requests.post(url + "/v1/updates", data=bodies[i], allow_redirects=False, timeout=60,
                              headers={"Authorization": f"Bearer {tokens[i]}", "Content-Type": "application/json",
                                       "Idempotency-Key": hashlib.sha256(bodies[i]).hexdigest()})
            with lock:
                timings["upload"].append(time.perf_counter() - start)
                statuses[r.status_code] += 1
            if r.status_code != 202:
                raise RuntimeError(f"upload answered {r.status_code}: {r.text[:200]}")
        except Exception as exc:  # noqa: BLE001 - every failure is reported in the table
            with lock:
                failures.append(f"device {i}: {type(exc).__name__}: {exc}")

    with HubProcess(root) as hub:
        barrier = threading.Barrier(args.devices)
        threads = [threading.Thread(target=device, args=(i, barrier, hub.url)) for i in range(args.devices)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    db = sqlite3.connect(root / "registry.sqlite")
    stored = db.execute("SELECT COUNT(*), COUNT(DISTINCT token_id) FROM updates WHERE status='pending'").fetchone()
    db.close()
    total = sum(statuses.values())
    print(f"\n{args.devices} devices, artifact {args.artifact_mb} MB, {total} requests in {wall:.1f} s "
          f"= {total / wall:.1f} req/s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'request':<10} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    everything = []
    for kind in ("root", "index", "manifest", "artifact", "upload"):
        values = timings.get(kind, [])
        everything += values
        if values:
            print(f"{kind:<10} {len(values):>5} {statistics.median(values) * 1e3:>8.1f} "
                  f"{_percentile(values, 0.99) * 1e3:>8.1f} {max(values) * 1e3:>8.1f}")
    print(f"{'all':<10} {len(everything):>5} {statistics.median(everything) * 1e3:>8.1f} "
          f"{_percentile(everything, 0.99) * 1e3:>8.1f} {max(everything) * 1e3:>8.1f}")
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    print(f"statuses {dict(sorted(statuses.items()))}; 5xx: {server_errors}; uploads stored: {stored[0]} "
          f"from {stored[1]} tokens (expected {args.devices}); failures: {len(failures)}")
    for line in failures[:10]:
        print("  " + line)
    ok = server_errors == 0 and not failures and stored == (args.devices, args.devices)
    print("OK: no 5xx, nothing lost" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
