"""Turn device updates into a candidate version; an operator (or the guarded auto mode) approves it.

When ``min_updates`` distinct device tokens each have a pending update for the current version:
take each token's newest one, aggregate the head changes with the robust mean (hub/robust.py),
add it to ``classifier.1`` of the current version's private checkpoint, refuse a seeded base
checkpoint unless ``allow_seeded``, write the new checkpoint with the composed privacy block
(hub/device_card.py), run held-out validation when the hub has a set, export (``python -m export
all``, signed only by a throw-away build key whose signature is deleted), and record it under
``private/candidates/<n>/``. Nothing is signed with the hub's key or served until ``hub approve``
(hub/approval.py). One aggregation at a time (a lock file); on any failure nothing is recorded
and the updates stay pending.

Runs in its own process (``python -m hub aggregate``): the export takes minutes and torch stays
out of the HTTP process. The server starts one only when none runs (``maybe_start``).
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from edge_client.fileio import atomic_write, fsync_dir
from hub.device_card import device_card, device_privacy
from hub.device_updates import read_config, update_vector
from hub.registry import HubError, Registry, is_seeded
from hub.robust import robust_mean
from hub.update_store import claim_for_candidate, load_payload, pending_devices, pending_updates

__all__ = ["aggregate", "maybe_start", "apply_head_change"]

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _export(checkpoint: Path, out: Path, *, key: Path, version: int, config: dict, log: Callable) -> None:
    cmd = [sys.executable, "-m", "export", "all", "--checkpoint", str(checkpoint), "--out", str(out),
           "--key", str(key), "--version", str(version), "--formats", config["export_formats"],
           *config["export_args"]]
    log(f"exporting candidate version {version}: {' '.join(cmd[1:])}")
    result = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
        raise HubError(f"export of candidate version {version} failed: {last}")


def apply_head_change(model, change: np.ndarray) -> None:
    """Add a (5*512 + 5) head change to ``classifier.1`` in place."""
    import torch

    head = model.classifier[1]
    rows = head.weight.shape[0]
    weight = torch.from_numpy(change[:-rows].reshape(rows, -1)).to(head.weight.dtype).view_as(head.weight)
    with torch.no_grad():
        head.weight += weight
        head.bias += torch.from_numpy(change[-rows:]).to(head.bias.dtype)


def _build(reg: Registry, current: int, rows: list[dict], work: Path, config: dict, log: Callable) -> dict:
    """Write the candidate checkpoint under ``work``; returns the facts for its summary and card."""
    from trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    source = reg.checkpoint_path(current)
    if not source.is_file():
        raise HubError(f"{source}: no private checkpoint for version {current} (publish it with --checkpoint)")
    try:
        model, ckpt = load_checkpoint(source)
        base_model, _ = load_checkpoint(source)
    except CheckpointError as exc:
        raise HubError(str(exc)) from None
    base_privacy = ckpt.get("privacy") or {}
    if is_seeded(base_privacy) and not config["allow_seeded"]:
        raise HubError(f"{source}: the base checkpoint's privacy block has \"seeded\": true: its noise is "
                       f"reproducible; refusing to build on it (`hub configure --allow-seeded` builds test builds, "
                       f"marked no DP guarantee)")
    payloads = [load_payload(reg, r["id"]) for r in rows]
    vectors = np.stack([update_vector(p) for p in payloads])
    norms = np.linalg.norm(vectors, axis=1)
    change = robust_mean(vectors, config["robust_mean"])
    apply_head_change(model, change)
    updates = [{"token_id": r["token_id"], "epsilon": p["epsilon"], "delta": p["delta"]} for r, p in zip(rows, payloads)]
    privacy = device_privacy(base_privacy, updates, base_version=current)
    validation = None
    if config["validation_data"]:
        log(f"validating on {config['validation_data']}")
        from hub.validation import validate

        validation = validate(config["validation_data"], ckpt["preprocess"], {"base": base_model, "candidate": model})
    train_config = {**(ckpt.get("config") or {}),
                    "device_updates": {"base_version": current, "devices": len(rows), "robust_mean": config["robust_mean"],
                                       "update_ids": [r["id"] for r in rows]}}
    metrics = {"hub_validation": validation["candidate"]} if validation else {}
    save_checkpoint(work / "model.pt", model, preprocess=ckpt["preprocess"], mode=ckpt["mode"], privacy=privacy,
                    metrics=metrics, config=train_config, round_kept=int(ckpt.get("round", 0)),
                    class_names=ckpt["class_names"])
    log(f"version {current} + {config['robust_mean']} mean of {len(rows)} device updates: norms "
        f"{norms.min():.4f}..{norms.max():.4f}, change norm {np.linalg.norm(change):.4f}")
    return {"base_privacy": base_privacy, "updates": updates, "privacy": privacy, "validation": validation,
            "norms": {"min": float(norms.min()), "median": float(np.median(norms)), "max": float(norms.max()),
                      "change": float(np.linalg.norm(change))}}


def aggregate(root: Path, *, log: Callable[[str], None] = print) -> int | None:
    """Build a candidate if enough distinct devices wait. Returns its version, or None (not enough, busy,
    or a candidate already awaits approval).

    Raises:
        HubError: no private checkpoint, a seeded base, a failed export or validation (nothing recorded).
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
        waiting = [c["version"] for c in reg.candidates("pending") if c["base_version"] == current]
        if waiting:
            log(f"candidate version {waiting[0]} awaits approval (`python -m hub pending`)")
            return None
        rows = pending_updates(reg, current) if current is not None else []
        if len(rows) < config["min_updates"]:
            log(f"updates from {len(rows)} of {config['min_updates']} devices for version {current}: waiting")
            return None
        version = max([v["version"] for v in reg.versions()] + [0]) + 1
        work = Path(tempfile.mkdtemp(dir=reg.private_dir(), prefix=".candidate."))
        try:
            facts = _build(reg, current, rows, work, config, log)
            from export.signing import generate_private_key

            generate_private_key(work / "build.key")  # export needs a key; its signature is thrown away
            _export(work / "model.pt", work / "dist", key=work / "build.key", version=version, config=config, log=log)
            (work / "dist" / "manifest.sig").unlink()
            (work / "build.key").unlink()
            card = device_card(version=version, base_version=current, base=facts["base_privacy"],
                               updates=facts["updates"], min_updates=config["min_updates"],
                               robust_mean=config["robust_mean"], validation=facts["validation"])
            atomic_write(work / "MODEL_CARD.md", card.encode())
            summary = {"base_version": current, "devices": len(rows), "update_ids": [r["id"] for r in rows],
                       "robust_mean": config["robust_mean"], "norms": facts["norms"], "privacy": facts["privacy"],
                       "validation": facts["validation"]}
            atomic_write(work / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
            final = reg.private_dir() / "candidates" / str(version)
            final.parent.mkdir(exist_ok=True)
            shutil.rmtree(final, ignore_errors=True)  # a rejected candidate's leftovers with this number
            os.replace(work, final)
            work = final  # from here a failure removes the moved folder
            fsync_dir(final.parent)
            claim_for_candidate(reg, version=version, base_version=current, update_ids=[r["id"] for r in rows],
                                folder=final, devices=len(rows), summary=summary)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log(f"candidate version {version} built from {len(rows)} devices' updates: review it with "
            f"`python -m hub pending`, then `hub approve {version}` or `hub reject {version}`")
        if config["auto_approve"]:
            from hub.approval import approve

            try:
                approve(root, version, auto=True, log=log)
            except HubError as exc:
                log(f"not approved automatically: {exc}")
        return version
    finally:
        lock.close()
        reg.close()


_CHILD: list[subprocess.Popen] = []
_CHILD_GUARD = threading.Lock()


def maybe_start(root: Path, reg: Registry, current: int | None, min_updates: int) -> bool:
    """Start ``python -m hub aggregate`` in the background when enough devices wait, no candidate
    awaits approval and no aggregation runs (this process's child, or any holder of the lock).

    Returns:
        True when one was started.
    """
    if current is None or pending_devices(reg, current) < min_updates:
        return False
    if any(c["base_version"] == current for c in reg.candidates("pending")):
        return False
    with _CHILD_GUARD:
        if _CHILD and _CHILD[0].poll() is None:
            return False
        _CHILD.clear()
        private = Path(root) / "private"
        private.mkdir(mode=0o700, exist_ok=True)
        with open(private / "aggregate.lock", "w") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # another process (e.g. a manual `hub aggregate`) is at it
            fcntl.flock(probe, fcntl.LOCK_UN)
        with open(private / "aggregate.log", "ab") as out:
            _CHILD.append(subprocess.Popen([sys.executable, "-m", "hub", "aggregate", "--root", str(root)], cwd=ROOT,
                                           env=_env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return True
