"""Turn device updates into the next published version.

When ``min_updates`` (HUBDIR/hub.json) updates for the current version are stored: average their
head changes, add the mean to ``classifier.1`` of the current version's private checkpoint
(HUBDIR/private/checkpoints/<n>/model.pt), write the new checkpoint with the device-level privacy
field, run the export pipeline (``python -m export all``) signed with the hub's key, publish it as
version n+1, keep its checkpoint and model card, and mark the updates aggregated. One aggregation
at a time (a lock file); on any failure nothing is published and the updates stay pending.

Runs in its own process (``python -m hub aggregate``), started by the server after an upload:
the export takes minutes and torch stays out of the HTTP process.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from hub.device_card import device_card, device_privacy
from hub.device_updates import read_config, signing_key_path
from edge_client.fileio import atomic_write
from hub.registry import HubError, Registry

__all__ = ["aggregate", "start_aggregation", "mean_update"]

ROOT = Path(__file__).resolve().parents[1]


def mean_update(payloads: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The plain mean of the head changes: (5, 512) and (5,), float64."""
    weight = np.mean([np.asarray(p["delta_weight"], np.float64) for p in payloads], axis=0)
    bias = np.mean([np.asarray(p["delta_bias"], np.float64) for p in payloads], axis=0)
    return weight, bias


def _export(checkpoint: Path, out: Path, *, key: Path, version: int, config: dict, log: Callable) -> None:
    cmd = [sys.executable, "-m", "export", "all", "--checkpoint", str(checkpoint), "--out", str(out),
           "--key", str(key), "--version", str(version), "--formats", config["export_formats"],
           *config["export_args"]]
    log(f"exporting version {version}: {' '.join(cmd[1:])}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
        raise HubError(f"export of version {version} failed: {last}")


def _build(reg: Registry, current: int, rows: list[dict], work: Path, log: Callable) -> tuple[Path, dict]:
    """Write the new checkpoint under ``work``; returns it and its card facts."""
    import torch

    from trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    source = reg.checkpoint_path(current)
    if not source.is_file():
        raise HubError(f"{source}: no private checkpoint for version {current} (publish it with --checkpoint)")
    try:
        model, ckpt = load_checkpoint(source)
    except CheckpointError as exc:
        raise HubError(str(exc)) from None
    payloads = [json.loads(Path(r["path"]).read_text()) for r in rows]
    weight, bias = mean_update(payloads)
    head = model.classifier[1]
    with torch.no_grad():
        head.weight += torch.from_numpy(weight).to(head.weight.dtype).view_as(head.weight)
        head.bias += torch.from_numpy(bias).to(head.bias.dtype)
    updates = [{"token_id": r["token_id"], **{k: p[k] for k in ("epsilon", "delta", "steps", "noise_multiplier",
                                                                 "sample_rate", "clipping_norm")}}
               for r, p in zip(rows, payloads)]
    privacy = device_privacy(ckpt.get("privacy") or {}, updates, base_version=current)
    config = {**(ckpt.get("config") or {}), "device_updates": {"base_version": current, "count": len(rows),
                                                              "update_ids": [r["id"] for r in rows]}}
    # The base mode is kept: export states ε only for the modes it knows as private.
    path = save_checkpoint(work / "model.pt", model, preprocess=ckpt["preprocess"], mode=ckpt["mode"],
                           privacy=privacy, metrics={}, config=config, round_kept=int(ckpt.get("round", 0)),
                           class_names=ckpt["class_names"])
    log(f"version {current} + mean of {len(rows)} updates: head change norm {np.linalg.norm(weight):.4f}")
    return path, {"base": ckpt.get("privacy") or {}, "updates": updates}


def aggregate(root: Path, *, log: Callable[[str], None] = print) -> int | None:
    """Aggregate if enough updates wait. Returns the published version, or None (not enough, or busy).

    Raises:
        HubError: no signing key or private checkpoint, a failed export or publish (nothing published).
    """
    root = Path(root)
    reg = Registry(root)
    lock = open(reg.private_dir() / "aggregate.lock", "w")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("an aggregation is already running")
            return None
        try:
            config = read_config(root)
        except ValueError as exc:
            raise HubError(str(exc)) from None
        current = reg.latest_active()
        rows = reg.pending_updates(current) if current is not None else []
        if len(rows) < config["min_updates"]:
            log(f"{len(rows)} of {config['min_updates']} updates for version {current}: waiting")
            return None
        key = signing_key_path(root)
        if not key.is_file():
            raise HubError(f"{key}: no signing key (run `python -m hub configure --signing-key private.key`)")
        work = Path(tempfile.mkdtemp(dir=reg.private_dir(), prefix=".aggregate."))
        try:
            checkpoint, facts = _build(reg, current, rows, work, log)
            version = (max(v["version"] for v in reg.versions()) or current) + 1
            _export(checkpoint, work / "dist", key=key, version=version, config=config, log=log)
            published = reg.publish(work / "dist")
            reg.store_checkpoint(published, checkpoint)
            card = device_card(version=published, base_version=current, base=facts["base"], updates=facts["updates"],
                               min_updates=config["min_updates"]).encode()
            atomic_write(reg.checkpoint_path(published).parent / "MODEL_CARD.md", card)
            atomic_write(reg.version_dir(published) / "MODEL_CARD.md", card)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        reg.mark_updates([r["id"] for r in rows], "aggregated", published)
        stale = [r["id"] for r in reg.db.execute("SELECT id FROM updates WHERE status='pending' AND "
                                                   "base_version < ?", (published,)).fetchall()]
        reg.mark_updates(stale, "stale")
        log(f"published version {published} from {len(rows)} device updates")
        return published
    finally:
        lock.close()
        reg.close()


_CHILDREN: list[subprocess.Popen] = []


def start_aggregation(root: Path) -> None:
    """Start ``python -m hub aggregate --root ROOT`` in the background (its log: private/aggregate.log)."""
    for child in list(_CHILDREN):  # reap finished ones
        if child.poll() is not None:
            _CHILDREN.remove(child)
    root = Path(root)
    log = open(root / "private" / "aggregate.log", "ab")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    _CHILDREN.append(subprocess.Popen([sys.executable, "-m", "hub", "aggregate", "--root", str(root)], cwd=ROOT,
                                      env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    log.close()
