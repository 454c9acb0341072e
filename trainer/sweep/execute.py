"""Run a sweep's plan: one `trainer.runner.Run` per key, results kept in OUT/results.jsonl.

A sweep can take hours on a CPU, so it resumes: a key whose row is already in results.jsonl is
not run again (a killed run is redone from its start). OUT/sweep.json records the settings; a
second sweep with other settings into the same OUT is refused.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from edge_client.fileio import atomic_write_text
from trainer.reports import best_on_validation
from trainer.sweep.plan import SweepSettings, run_config, run_dir_name, run_key, train_patient_count

RESULTS = "results.jsonl"
MANIFEST = "sweep.json"


def load_results(out: Path) -> list[dict]:
    """The rows of OUT/results.jsonl ([] when absent).

    Raises:
        ValueError: a line that is not JSON (names the file and line).
    """
    path = out / RESULTS
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"{path}:{number}: not a JSON line; fix or delete the file") from None
    return rows


def _save_results(out: Path, rows: list[dict]) -> None:
    atomic_write_text(out / RESULTS, "".join(json.dumps(r) + "\n" for r in rows))


def _check_manifest(out: Path, settings: SweepSettings) -> None:
    path = out / MANIFEST
    record = {"fingerprint": settings.fingerprint(), "settings": {**settings.__dict__}}
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("fingerprint")
        except (OSError, ValueError):
            raise ValueError(f"{path}: unreadable; delete it or choose another --out") from None
        if old != record["fingerprint"]:
            raise ValueError(f"{out}: holds a sweep with other settings ({path}); choose another --out "
                             "or delete that folder to start over")
        return
    atomic_write_text(path, json.dumps(record, indent=2, default=list) + "\n")


def _metrics(prefix: str, row: dict) -> dict:
    return {f"{prefix}test_accuracy": row["test_accuracy"], f"{prefix}test_kappa": row["test_kappa"],
            f"{prefix}test_referable_auc": row["test_referable_auc"]}


def body_row(settings: SweepSettings, seed: int, scratch: Path) -> dict:
    """The public model's accuracy on this seed's validation and test split: no private training.

    When --weights is a Dopamine checkpoint, the whole public model (body and its own head) is
    evaluated. Runs start from its body only: `--weights` loads `features.*` and the head is
    initialised afresh from the run's seed (trainer/model.py).
    """
    from trainer.checkpoint import CheckpointError, load_checkpoint
    from trainer.runner import Run, evaluate_split
    config = run_config(settings, "central", seed=seed, out=str(scratch), train_patients=1)
    job = Run(config, progress=False)
    try:
        model, source = load_checkpoint(settings.weights)[0], "public model (body and its own head)"
    except CheckpointError:
        model, source = job.model, "public body and a fresh head"
    val, test = evaluate_split(model, job.data.val), evaluate_split(model, job.data.test)
    return {"kind": "body", "mode": "body", "target_epsilon": None, "seed": seed, "rounds": None, "source": source,
            "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"], "test_kappa": test["kappa"],
            "test_referable_auc": test["referable_auc"]}


def run_one(settings: SweepSettings, key: dict, run_dir: Path, *, train_patients: int,
            progress: bool = False) -> dict:
    """Train one key to completion; returns its results row (kept round chosen on validation)."""
    from trainer.runner import Run
    config = run_config(settings, key["mode"], seed=key["seed"], out=str(run_dir), train_patients=train_patients,
                        target_epsilon=key["target_epsilon"], rounds=key["rounds"])
    load_start, wall, cpu = os.getloadavg()[0], time.time(), time.process_time()
    job = Run(config, progress=progress)
    job.train()
    kept, final = best_on_validation(job.rows), job.rows[-1]
    privacy = job.mode.privacy() or {}
    rates = getattr(job.mode, "sample_rates", None)
    return {"kind": "run", **key, "T": config.rounds, "rounds_run": job.round,
            "sample_rate": sum(rates) / len(rates) if rates else getattr(job.mode, "sample_rate", None),
            "noise_multiplier": getattr(job.mode, "noise_multiplier", None),
            "epsilon": privacy.get("epsilon"), "epsilon_mean": privacy.get("epsilon_mean"),
            "delta": privacy.get("delta"), "accountant": privacy.get("accountant"),
            "kept_round": kept["round"], "val_accuracy": kept["val_accuracy"], **_metrics("", kept),
            **_metrics("final_", final), "train_patients": train_patients,
            "seconds": round(time.time() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
            "device": config.device, "stop_reason": job.stop_reason, "run_dir": str(run_dir)}


def execute(settings: SweepSettings, plan: list[dict], out: Path, *, progress: bool = False,
            log: Callable[[str], None] = print) -> list[dict]:
    """Run every key of `plan` not yet in OUT/results.jsonl, plus the body's row per seed.

    Returns:
        Every row of OUT/results.jsonl after the sweep (earlier ones included).
    Raises:
        ValueError: OUT holds another sweep, bad data or settings (from the trainer).
    """
    # read the data first: a bad --data leaves no half-made OUT behind
    patients = {seed: train_patient_count(settings, seed) for seed in sorted({k["seed"] for k in plan})}
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, settings)
    results = load_results(out)
    done = {run_key(r) for r in results}
    for seed in patients:
        if ("body", "body", None, seed, None) not in done:
            results.append(body_row(settings, seed, out / "runs" / f"body-seed{seed}"))
            _save_results(out, results)
    todo = [k for k in plan if run_key({"kind": "run", **k}) not in done]
    log(f"sweep: {len(plan) - len(todo)} of {len(plan)} runs already in {out / RESULTS}; {len(todo)} to run")
    for index, key in enumerate(todo, 1):
        row = run_one(settings, key, out / "runs" / run_dir_name(key), train_patients=patients[key["seed"]],
                      progress=progress)
        results.append(row)
        _save_results(out, results)
        log(f"[{index}/{len(todo)}] {run_dir_name(key)}: test acc {row['test_accuracy']:.3f} "
            f"(kept round {row['kept_round']}), eps {row['epsilon']}, {row['seconds']:.0f} s "
            f"(load {row['load_start']:.1f})")
    return results
