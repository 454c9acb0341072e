"""An operator's decision on a candidate version built from device updates.

``approve`` signs the candidate's manifest with the hub's key (private/signing.key, the
publisher's) and publishes it (files and row in one transaction that also marks its updates
aggregated), then re-signs the model list. ``reject`` closes it; its updates are never used
again (devices must train afresh). ``describe`` is what ``hub pending`` prints: base version,
devices, update norms, privacy, held-out validation and the export's parity report.

The automatic mode (hub.json ``auto_approve``) calls ``approve(auto=True)``, which refuses a
candidate without held-out validation or whose held-out accuracy is below the current version's.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from edge_client.fileio import atomic_write
from edge_client.privacy_figures import guarantee_text
from hub.device_updates import signing_key_path
from hub.registry import HubError, Registry, now_utc

__all__ = ["approve", "reject", "describe"]


def _pending(reg: Registry, version: int) -> dict:
    for cand in reg.candidates("pending"):
        if cand["version"] == version:
            return {**cand, "summary": json.loads(cand["summary"])}
    raise HubError(f"no candidate version {version} awaits approval (see `python -m hub pending`)")


def approve(root: Path, version: int, *, auto: bool = False, log: Callable[[str], None] = print) -> int:
    """Sign and publish a pending candidate. Returns the published version.

    Raises:
        HubError: no such pending candidate, its base is no longer the current version, no
        signing key, or (auto) no validation or a drop in held-out accuracy. Nothing published.
    """
    from export.signing import sign_manifest
    from hub.index import has_index, signed_index

    root = Path(root)
    reg = Registry(root)
    try:
        cand = _pending(reg, version)
        summary, folder = cand["summary"], Path(cand["folder"])
        current = reg.latest_active()
        if cand["base_version"] != current:
            raise HubError(f"candidate {version} was built on version {cand['base_version']}, but the current "
                           f"version is {current}: reject it")
        validation = summary.get("validation")
        if auto:
            if not validation:
                raise HubError(f"automatic approval needs held-out validation (`hub configure --validation-data "
                               f"DIR`); candidate {version} waits for `hub approve {version}`")
            before, after = validation["base"]["accuracy"], validation["candidate"]["accuracy"]
            if after < before:
                raise HubError(f"held-out accuracy would drop from {before:.4f} to {after:.4f}: candidate {version} "
                               f"waits for an operator (`hub approve {version}` or `hub reject {version}`)")
        key = signing_key_path(root)
        if not key.is_file():
            raise HubError(f"{key}: no signing key (run `python -m hub configure --signing-key private.key`)")
        dist = folder / "dist"
        atomic_write(dist / "manifest.sig", sign_manifest((dist / "manifest.json").read_bytes(), key))
        reg.store_checkpoint(version, folder / "model.pt")  # before the row: a published version always has it
        card = (folder / "MODEL_CARD.md").read_bytes()
        atomic_write(reg.checkpoint_path(version).parent / "MODEL_CARD.md", card)
        how = "automatically (held-out accuracy did not drop)" if auto else "by the operator"

        def mark(db, published: int) -> None:
            db.execute("UPDATE candidates SET status='approved', decided=?, reason=? WHERE version=?",
                       (now_utc(), f"approved {how}", version))
            db.execute("UPDATE updates SET status='aggregated', aggregated_into=? WHERE candidate=? AND "
                       "status='candidate'", (published, version))

        published = reg.publish(dist, allow_seeded=bool(summary["privacy"].get("test_build")),
                                extra_files={"MODEL_CARD.md": card}, on_commit=mark)
    finally:
        reg.close()
    shutil.rmtree(folder / "dist", ignore_errors=True)  # now under versions/<n>/
    if has_index(root):
        signed_index(root)
    log(f"published version {published} {how}")
    return published


def reject(root: Path, version: int, reason: str = "") -> None:
    """Close a pending candidate; its updates are marked rejected and never aggregated.

    Raises:
        HubError: no such pending candidate.
    """
    reg = Registry(Path(root))
    try:
        cand = _pending(reg, version)
        reg.decide_candidate(version, "rejected", reason or "rejected by the operator", updates_to="rejected")
    finally:
        reg.close()
    shutil.rmtree(Path(cand["folder"]) / "dist", ignore_errors=True)


def describe(cand: dict) -> list[str]:
    """Lines for ``hub pending``: what an operator needs to decide."""
    summary = json.loads(cand["summary"]) if isinstance(cand["summary"], str) else cand["summary"]
    folder = Path(cand["folder"])
    norms = summary["norms"]
    lines = [f"candidate version {cand['version']} (built {cand['created']} on version {cand['base_version']}): "
             f"updates from {cand['devices']} devices, {summary['robust_mean']} mean",
             f"  update norms {norms['min']:.4f} .. median {norms['median']:.4f} .. {norms['max']:.4f}; "
             f"head change norm {norms['change']:.4f}",
             f"  privacy: {guarantee_text(summary['privacy'])}"]
    validation = summary.get("validation")
    if validation:
        base, new = validation["base"], validation["candidate"]
        lines.append(f"  held-out validation ({validation['data']}, {new['n']} photos):")
        for key in ("accuracy", "kappa", "referable_sensitivity", "referable_specificity"):
            b, c = base.get(key), new.get(key)
            fmt = (lambda v: "n/a" if v is None else f"{v:.4f}")
            lines.append(f"    {key:<22} {fmt(b)} (v{cand['base_version']}) -> {fmt(c)}")
        if new["accuracy"] < base["accuracy"]:
            lines.append("    WARNING: held-out accuracy drops")
    else:
        lines.append("  held-out validation: none (no validation set configured: `hub configure --validation-data DIR`)")
    report = folder / "dist" / "report.json"
    try:
        rows = json.loads(report.read_text())["artifacts"]
        lines.append("  parity with the fp32 checkpoint (export report):")
        lines += [f"    {r['artifact']:<26} top-1 agreement {r['top1_agreement']:.4f}, max |dlogit| "
                  f"{r['max_abs_dlogit']:.4f}" for r in rows]
    except (OSError, ValueError, KeyError):
        lines.append(f"  parity report: {report} unreadable")
    lines.append(f"  model card: {folder / 'MODEL_CARD.md'}")
    return lines
