"""What `python -m hub publish|versions|updates|pending|token list` do and print (hub/cli.py parses)."""
from __future__ import annotations

import json
from pathlib import Path

from edge_client.privacy_figures import TEST_BUILD_TEXT, guarantee_text
from hub.registry import HubError, Registry, is_seeded

__all__ = ["publish", "versions", "updates", "pending", "tokens"]


def _checkpoint_privacy(path: Path) -> dict:
    """The privacy block of a checkpoint (torch.load, weights only)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HubError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    return (ckpt.get("privacy") or {}) if isinstance(ckpt, dict) else {}


def publish(reg: Registry, args) -> None:
    """Publish DIST; with --checkpoint, keep it privately first (removed again if the publish fails).

    Raises:
        HubError: a bad bundle, a seeded bundle or checkpoint without --allow-seeded, a low version.
    """
    checkpoint = args.checkpoint
    if checkpoint and not checkpoint.is_file():
        raise HubError(f"{checkpoint}: checkpoint not found")
    if checkpoint and is_seeded(_checkpoint_privacy(checkpoint)) and not args.allow_seeded:
        raise HubError(f"{checkpoint}: privacy block has \"seeded\": true: its noise is reproducible, so its epsilon is "
                       f"no guarantee; pass --allow-seeded to publish it as a test build (no DP guarantee)")
    stored = None
    if checkpoint:
        try:
            version = int(json.loads((args.dist / "manifest.json").read_bytes())["model_version"])
        except (OSError, ValueError, KeyError, TypeError):
            version = None  # publish reports the bundle's problem below
        if version is not None and not reg.checkpoint_path(version).exists():
            stored = reg.store_checkpoint(version, checkpoint)
    try:
        version = reg.publish(args.dist, key=args.key, allow_seeded=args.allow_seeded)
    except BaseException:
        if stored is not None:
            stored.unlink(missing_ok=True)
        raise
    if checkpoint and stored is None:
        reg.store_checkpoint(version, checkpoint)
    mark = f" ({TEST_BUILD_TEXT})" if reg.versions()[-1]["test_build"] else ""
    print(f"published version {version} from {args.dist}{mark}")


def versions(reg: Registry) -> None:
    print(f"{'version':>7}  {'status':<9}  {'published':<20}  {'created':<20}  privacy")
    for v in reg.versions():
        manifest = json.loads(reg.db.execute("SELECT manifest FROM versions WHERE version=?",
                                             (v["version"],)).fetchone()[0])
        privacy = dict(manifest.get("privacy") or {})
        if v["test_build"]:
            privacy["test_build"] = True
        print(f"{v['version']:>7}  {v['status']:<9}  {v['published']:<20}  {v['created']:<20}  "
              f"{guarantee_text(privacy)}")


def updates(reg: Registry) -> None:
    print(f"{'id':>4}  {'token':>5}  {'received':<20}  {'base':>4}  {'norm':>8}  {'status':<10}  into")
    for r in reg.db.execute("SELECT id, token_id, received, base_version, norm, status, aggregated_into, candidate "
                            "FROM updates ORDER BY id").fetchall():
        norm = f"{r['norm']:.4f}" if r["norm"] is not None else "-"
        into = r["aggregated_into"] or (f"candidate {r['candidate']}" if r["candidate"] else "")
        base = r["base_version"] if r["base_version"] is not None else "-"
        print(f"{r['id']:>4}  {r['token_id']:>5}  {r['received']:<20}  {base:>4}  {norm:>8}  {r['status']:<10}  {into}")


def pending(reg: Registry) -> None:
    from hub.approval import describe

    waiting = reg.candidates("pending")
    if not waiting:
        print("no candidate version awaits approval")
        return
    for cand in waiting:
        print("\n".join(describe(cand)))
        print(f"  decide: python -m hub approve {cand['version']} --root {reg.root}   |   "
              f"python -m hub reject {cand['version']} --root {reg.root}")


def tokens(reg: Registry) -> None:
    print(f"{'id':>3}  {'name':<24}  {'created':<20}  revoked")
    for t in reg.tokens():
        print(f"{t['id']:>3}  {t['name']:<24}  {t['created']:<20}  {t['revoked'] or '-'}")
