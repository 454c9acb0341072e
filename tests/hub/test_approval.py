"""An operator's decisions on candidate versions, and what a hub-built version's card says.

The full path (devices train, the hub aggregates and exports, an operator approves) runs in
test_device_updates.py. Here candidates are recorded from signed test bundles with the registry's
own functions, so each decision rule (auto mode refusing an accuracy drop, revocation, rejection,
supersession, seeded bases) is checked without a minutes-long export each time.
"""
from __future__ import annotations

import json
import sqlite3

import pytest
import requests
from tests.helpers.bundles import HubProcess, fake_update, init_hub, run_cli, write_bundle

from edge_client.privacy_figures import TEST_BUILD_TEXT
from hub.approval import approve
from hub.device_card import device_card, device_privacy
from hub.device_updates import check_update
from hub.registry import HubError, Registry
from hub.update_store import claim_for_candidate, store_update

BASE = {"epsilon": 7.5, "delta": 1e-5, "accountant": "rdp", "privacy_model": "patient-level"}


@pytest.fixture()
def hub(tmp_path, keys, onnx_model):
    root = init_hub(tmp_path / "hub", keys[1], "--signing-key", keys[1].parent / "private.key")
    write_bundle(tmp_path / "dist1", version=1, model_file=onnx_model, key=keys[0])
    assert run_cli("hub", "publish", tmp_path / "dist1", "--root", root).returncode == 0
    reg = Registry(root)
    tokens = [reg.issue_token(f"tablet-{i}") for i in range(3)]
    reg.close()
    return root, tokens


def _upload(root, token_id: int, seed: int, base: int = 1) -> int:
    reg = Registry(root)
    try:
        body = json.dumps(fake_update(base, seed=seed)).encode()
        status, answer = store_update(reg, token_id, body, check_update(body, current_version=base))
        assert status == 202
        return answer["id"]
    finally:
        reg.close()


def _candidate(tmp_path, root, keys, onnx_model, *, version: int, base: int, ids: list[int], accuracy: tuple):
    """Record a candidate as `hub aggregate` would: an unsigned export, a checkpoint, a card, a summary."""
    folder = root / "private" / "candidates" / str(version)
    dist = write_bundle(folder / "dist", version=version, model_file=onnx_model, key=keys[0])
    (dist / "manifest.sig").unlink()
    (dist / "report.json").write_text(json.dumps({"artifacts": [{"artifact": "model_fp32.onnx", "top1_agreement": 1.0,
                                                                 "max_abs_dlogit": 0.0}]}))
    (folder / "model.pt").write_bytes(b"checkpoint")
    updates = [{"token_id": i + 1, "epsilon": 3.2, "delta": 1e-5} for i in range(len(ids))]
    (folder / "MODEL_CARD.md").write_text(device_card(version=version, base_version=base, base=BASE, updates=updates,
                                                      min_updates=2))
    metrics = lambda acc: {"accuracy": acc, "kappa": 0.5, "referable_sensitivity": 0.9,  # noqa: E731
                           "referable_specificity": 0.8, "n": 100}
    summary = {"base_version": base, "devices": len(ids), "update_ids": ids, "robust_mean": "norm-clipped",
               "norms": {"min": 3.0, "median": 3.0, "max": 3.0, "change": 1.0},
               "privacy": device_privacy(BASE, updates, base_version=base),
               "validation": {"data": "heldout", "base": metrics(accuracy[0]), "candidate": metrics(accuracy[1])}}
    reg = Registry(root)
    try:
        claim_for_candidate(reg, version=version, base_version=base, update_ids=ids, folder=folder, devices=len(ids),
                            summary=summary)
    finally:
        reg.close()


def _statuses(root):
    db = sqlite3.connect(root / "registry.sqlite")
    try:
        return [r[0] for r in db.execute("SELECT status FROM updates ORDER BY id")]
    finally:
        db.close()


def test_decisions_on_candidates(tmp_path, hub, keys, onnx_model):
    root, _tokens = hub
    ids = [_upload(root, 1, 1), _upload(root, 2, 2)]
    _candidate(tmp_path, root, keys, onnx_model, version=2, base=1, ids=ids, accuracy=(0.70, 0.60))
    listing = run_cli("hub", "pending", "--root", root).stdout
    assert "candidate version 2" in listing and "WARNING: held-out accuracy drops" in listing
    assert "top-1 agreement 1.0000" in listing and "BASIC-COMPOSITION" in listing
    with pytest.raises(HubError, match="held-out accuracy would drop from 0.7000 to 0.6000"):
        approve(root, 2, auto=True)  # the automatic mode refuses; the candidate waits
    assert _statuses(root) == ["candidate", "candidate"] and not (root / "versions" / "2").exists()

    r = run_cli("hub", "token", "revoke", "tablet-0", "--root", root)  # a contributing device is revoked
    assert r.returncode == 0 and "dropped 1 pending" in r.stdout
    assert _statuses(root) == ["revoked", "pending"]
    assert run_cli("hub", "approve", "2", "--root", root).returncode == 2  # nothing left to approve

    ids = [ids[1], _upload(root, 3, 3)]
    _candidate(tmp_path, root, keys, onnx_model, version=2, base=1, ids=ids, accuracy=(0.70, 0.72))
    assert approve(root, 2, auto=True) == 2  # no drop: the automatic mode may publish it
    assert _statuses(root) == ["revoked", "aggregated", "aggregated"]
    assert (root / "versions" / "2" / "MODEL_CARD.md").is_file() and (root / "private" / "checkpoints" / "2").is_dir()
    with HubProcess(root) as process:
        assert requests.get(process.url + "/v1/index.json", timeout=5).json()["latest"] == 2
        card = requests.get(process.url + "/v1/versions/2/model-card", timeout=5).text
        assert "updates from 2 devices" in card

    ids = [_upload(root, 2, 4, base=2), _upload(root, 3, 5, base=2)]
    _candidate(tmp_path, root, keys, onnx_model, version=3, base=2, ids=ids, accuracy=(0.7, 0.8))
    r = run_cli("hub", "reject", "3", "--root", root, "--reason", "not convinced")
    assert r.returncode == 0 and not (root / "private" / "candidates" / "3" / "dist").exists()
    assert _statuses(root)[-2:] == ["rejected", "rejected"]  # never aggregated later

    ids = [_upload(root, 2, 6, base=2), _upload(root, 3, 7, base=2)]
    _candidate(tmp_path, root, keys, onnx_model, version=3, base=2, ids=ids, accuracy=(0.7, 0.8))
    write_bundle(tmp_path / "dist3", version=3, model_file=onnx_model, key=keys[0])
    assert run_cli("hub", "publish", tmp_path / "dist3", "--root", root).returncode == 0  # a release overtakes it
    assert run_cli("hub", "pending", "--root", root).stdout.startswith("no candidate")
    assert _statuses(root)[-2:] == ["stale", "stale"]


def test_aggregation_refuses_a_seeded_base_checkpoint(tmp_path, hub):
    import torch

    from edge_client.preprocess import PreprocessConfig
    from trainer.checkpoint import save_checkpoint
    from trainer.model import build_model

    root, _tokens = hub
    torch.manual_seed(0)
    save_checkpoint(root / "private" / "checkpoints" / "1" / "model.pt", build_model(),
                    preprocess=PreprocessConfig(image_size=32).to_dict(), mode="dopamine",
                    privacy={**BASE, "seeded": True})
    for token_id, seed in ((1, 11), (2, 12), (3, 13)):
        _upload(root, token_id, seed)
    r = run_cli("hub", "aggregate", "--root", root, timeout=300)
    assert r.returncode == 2 and '"seeded": true' in r.stderr and "--allow-seeded" in r.stderr
    assert _statuses(root) == ["pending"] * 3  # nothing used, nothing recorded


def test_the_card_composes_privacy_and_counts_distinct_devices():
    updates = [{"token_id": 4, "epsilon": 3.001, "delta": 1e-5}, {"token_id": 9, "epsilon": 2.5, "delta": 1e-5}]
    privacy = device_privacy(BASE, updates, base_version=1)
    assert privacy["epsilon"] == pytest.approx(10.501) and privacy["delta"] == pytest.approx(2e-5)
    assert privacy["device_updates"]["devices"] == 2 and privacy["accountant"] == "basic-composition"
    card = device_card(version=2, base_version=1, base=BASE, updates=updates, min_updates=2)
    assert "ε = 10.51, δ = 2e-05" in card  # 7.5 + 3.001, rounded UP, never the max (7.5)
    assert "device patients: (ε ≤ 3.01" in card and "updates from 2 devices" in card
    assert "σ" not in card and "|" not in card  # no per-device table: no σ, q or token ids
    seeded = device_card(version=2, base_version=1, base={**BASE, "seeded": True}, updates=updates, min_updates=2)
    assert TEST_BUILD_TEXT in seeded and "ε = 10.51" not in seeded.split("## Privacy")[1].split("\n\n")[1]
    public = device_privacy({"epsilon": None}, updates, base_version=1)
    assert public["epsilon"] is None and "no differential privacy" in public["privacy_model"]
