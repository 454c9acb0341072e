"""DP step cost on SqueezeNet 1.1: each per-sample method against the plain (non-private) step,
and one Dopamine round (K hospitals) against one central DP-SGD step of the same total batch.

    python benchmarks/bench_dp_step.py [--sizes 64,128,224] [--batch 32] [--threads 2] [--device cpu|cuda]

Prints a markdown table; the README keeps the latest one with the machine it ran on.
Targets (issue 3): DP step ≤ 1.3x the plain step; a Dopamine round ≤ 1.1x the central DP step.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer.dp.dopamine import hospital_shares  # noqa: E402
from trainer.dp.hospital import HospitalData  # noqa: E402
from trainer.dp.per_sample import METHODS, PerSampleClipper  # noqa: E402
from trainer.model import build_model  # noqa: E402


def machine(device: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    gpu = f", {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}, torch {torch.__version__}"


def timed(fn, repeats: int, device: str) -> float:
    fn()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_step(model, images, labels):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,224")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hospitals", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device
    print(f"machine: {machine(device)}; batch {args.batch}; median of {args.repeats} after warm-up\n")
    print("| px | method | step s | vs plain |")
    print("|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        images = torch.randn(args.batch, 3, size, size, device=device)
        labels = torch.randint(0, 5, (args.batch,), device=device)
        model = build_model(dropout=0.0).to(device)
        plain = timed(lambda: plain_step(model, images, labels), args.repeats, device)
        print(f"| {size} | plain (no DP) | {plain:.3f} | 1.00x |", flush=True)
        for method in args.methods.split(","):
            clipper = PerSampleClipper(build_model(dropout=0.0).to(device), method=method, clipping_norm=1.0)
            try:
                seconds = timed(lambda: clipper.clipped_sum(images, labels), args.repeats, device)
            except Exception as exc:  # a method may not support a device; report, don't hide
                print(f"| {size} | {method} | failed: {type(exc).__name__} | |", flush=True)
                continue
            print(f"| {size} | {method} | {seconds:.3f} | {seconds / plain:.2f}x |", flush=True)

    # One Dopamine round (K hospitals, each ~batch/K patients, each adding its noise share) against
    # one central DP-SGD step of the same total batch (one holder, one noise draw). q = 1 so every
    # call clips the same patients; each goes through `hospital_shares`, as the simulator and Flower do.
    size = max(int(s) for s in args.sizes.split(","))
    method = "opacus-ew" if "opacus-ew" in args.methods else args.methods.split(",")[0]
    clipper = PerSampleClipper(build_model(dropout=0.0).to(device), method=method, clipping_norm=1.0)
    images = torch.randn(args.batch, 3, size, size)
    labels = torch.randint(0, 5, (args.batch,))
    pooled = HospitalData(images, labels, torch.arange(args.batch))
    hospitals = [HospitalData(images[k::args.hospitals], labels[k::args.hospitals],
                              torch.arange(len(labels[k::args.hospitals]))) for k in range(args.hospitals)]

    def central():
        return hospital_shares(clipper, [pooled], sample_rate=1.0, share_std=1.0, noise_generators=[None]).total

    def dopamine_simulator():  # the simulator: K clipping calls, the K CSPRNG shares as one summed draw
        return hospital_shares(clipper, hospitals, sample_rate=1.0, share_std=1.0,
                               noise_generators=[None] * args.hospitals).total

    def dopamine_per_node():  # a deployment: each hospital computes its own share (K noise draws)
        return sum(hospital_shares(clipper, [h], sample_rate=1.0, share_std=1.0, noise_generators=[None]).total
                   for h in hospitals)

    base = timed(central, args.repeats, device)
    simulator = timed(dopamine_simulator, args.repeats, device)
    nodes = timed(dopamine_per_node, args.repeats, device)
    print(f"\n| {size} px, total batch {args.batch}, K={args.hospitals}, {method} | s | vs central DP step |")
    print("|---|---|---|")
    print(f"| central DP-SGD step | {base:.3f} | 1.00x |")
    print(f"| Dopamine round, simulator (a clipping call per hospital, one summed noise draw) | {simulator:.3f} | "
          f"{simulator / base:.2f}x |")
    print(f"| Dopamine round, K separate hospital steps (sum of node compute) | {nodes:.3f} | {nodes / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
