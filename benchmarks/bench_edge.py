"""Edge client latency: cold start (load model + first diagnosis) and warm diagnosis, per runtime.

    python benchmarks/bench_edge.py                       # builds an fp32 ONNX test bundle at 224 px
    python benchmarks/bench_edge.py --dist DIST --key DIST/public.key   # a real `export all` bundle

The bundle is published to a real hub on loopback and synced into a fresh device folder per
runtime (EDGE_RUNTIME), so each row runs exactly what a phone would. Prints a table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dist", type=Path, help="bundle folder (default: build a test bundle)")
    p.add_argument("--key", type=Path, help="publisher public key of --dist")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    from tests.helpers.bundles import HubProcess, export_onnx, make_keys, write_bundle
    from tests.helpers.photos import fundus_photos, png_bytes

    from edge_client.api import EdgeClient
    from edge_client.runtimes import RUNTIMES

    work = Path(tempfile.mkdtemp(prefix="bench_edge_"))
    if args.dist is None:
        sk, key = make_keys(work / "keys")
        model = export_onnx(work / "model.onnx", args.size)
        dist, key = write_bundle(work / "dist", version=1, model_file=model, key=sk, size=args.size), key
    else:
        dist, key = args.dist, args.key
    hub_root = work / "hub"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # `delegate` signs the hub's model list (devices refuse a hub without one); its private key
    # is the publisher's, beside --key
    for cmd in (["init", "--root", hub_root, "--publisher-key", key],
                ["delegate", "--root", hub_root, "--signing-key", Path(key).parent / "private.key"],
                ["publish", dist, "--root", hub_root]):
        subprocess.run([sys.executable, "-m", "hub", *map(str, cmd)], check=True, env=env, cwd=ROOT)
    photos = [png_bytes(img) for img in fundus_photos(args.runs + 1, size=512, seed=7)]
    rows = []
    with HubProcess(hub_root) as hub:
        for runtime in RUNTIMES:
            if not runtime.available():
                continue
            os.environ["EDGE_RUNTIME"] = runtime.name
            home = work / f"phone-{runtime.name}"
            try:
                EdgeClient(home).sync(hub.url, public_key=key)
            except Exception as exc:  # e.g. no artifact for this runtime in the bundle
                print(f"{runtime.name}: skipped ({exc})")
                continue
            t0 = time.perf_counter()
            client = EdgeClient(home)
            client.diagnose(photos[0])
            cold = time.perf_counter() - t0
            warm = []
            for data in photos[1:]:
                t = time.perf_counter()
                client.diagnose(data)
                warm.append(time.perf_counter() - t)
            warm.sort()
            card = client.installed_model()
            size = client.store.load(card.version, check_hash=False).manifest["input_size"]
            rows.append((runtime.name, f"{card.artifact} ({size} px)", cold * 1e3, statistics.median(warm) * 1e3,
                         warm[int(0.9 * (len(warm) - 1))] * 1e3))
    os.environ.pop("EDGE_RUNTIME", None)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nedge diagnosis latency (512 px photos, {args.runs} warm runs, "
          f"{os.cpu_count()} CPUs; includes decode, quality gate, preprocessing, history write)")
    print(f"{'runtime':<14} {'artifact (input)':<32} {'cold ms':>9} {'warm p50 ms':>12} {'warm p90 ms':>12}")
    for name, art, cold, p50, p90 in rows:
        print(f"{name:<14} {art:<32} {cold:9.1f} {p50:12.1f} {p90:12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
