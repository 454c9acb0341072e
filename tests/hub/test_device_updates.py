"""Issue 8 end to end on loopback: devices train the head under DP, queue, approve, upload; the hub
checks each update, builds a candidate version, an operator reviews and approves it (issue 13),
the hub publishes it; a device syncs the new version.

The session's one trained model and its export (tests/conftest.py), published as version 1;
each device's photos are synthetic patients the model never saw.
"""
import json
import re
import socket
import time

import shutil

import numpy as np
import pytest
import requests

from tests.helpers.bundles import HubProcess, resign_as_version, run_cli
from tests.helpers.models import PRIVACY, SIZE

from edge_client.api import EdgeClient
from edge_client.budget import BudgetExceeded
from edge_client.runtimes import LiteRTRuntime
from edge_client.training import RoundSettings, extract_features

pytestmark = [pytest.mark.slow,  # the session's model and export, three devices train, the hub exports
              pytest.mark.skipif(not LiteRTRuntime.available(), reason="ai-edge-litert not installed")]

DEVICES, PER_DEVICE = 3, 60
BASE_EPSILON = PRIVACY["epsilon"]   # the session model's ε (tests/helpers/models.py)
EXPORT_ARGS = ["--calibration-images", "16", "--test-images", "40", "--latency-runs", "1", "--min-agreement", "0.8"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, trained_checkpoint, bundle, export_keys):
    """The session's model as version 1 (checkpoint, signed bundle, the publisher's keys) and each
    device's labels CSV beside its photos."""
    from trainer.data.datasets import load_dataset
    from trainer.data.synth import generate_dataset

    work = tmp_path_factory.mktemp("device_updates")
    shutil.copytree(export_keys[0].parent, work / "keys")
    shutil.copyfile(trained_checkpoint, work / "model.pt")
    resign_as_version(bundle, work / "dist", work / "keys" / "private.key", 1)
    ds = load_dataset(generate_dataset(work / "data", DEVICES * PER_DEVICE, size=SIZE, seed=8))
    devices = []
    for d in range(DEVICES):  # each device's photos and the specialist's labels CSV beside them
        photos = ds.samples[d * PER_DEVICE:(d + 1) * PER_DEVICE]
        lines = ["image,grade,patient"] + [f"../data/train_images/{s.image_path.name},{s.grade},"
                                           f"p{i // 2 if d == 0 else i}" for i, s in enumerate(photos)]
        csv = work / f"clinic{d}" / "labels.csv"
        csv.parent.mkdir()
        csv.write_text("\n".join(lines) + "\n")
        devices.append(csv)
    return work, devices


def _hub(tmp_path, work, *, min_updates, extra=()):
    root = tmp_path / "hub"
    r = run_cli("hub", "init", "--root", root, "--publisher-key", work / "keys" / "public.key", "--signing-key",
                work / "keys" / "private.key", "--min-updates", min_updates, "--export-formats", "tflite",
                *[f"--export-arg={a}" for a in EXPORT_ARGS], *extra)
    assert r.returncode == 0, r.stderr
    assert (root / "private" / "signing.key").stat().st_mode & 0o777 == 0o600
    assert (root / "private").stat().st_mode & 0o777 == 0o700  # made by init, before any upload
    r = run_cli("hub", "publish", work / "dist", "--root", root, "--checkpoint", work / "model.pt")
    assert r.returncode == 0, r.stderr
    tokens = []
    for d in range(DEVICES):
        out = tmp_path / f"token-{d}"
        assert run_cli("hub", "token", "issue", "--name", f"clinic-{d}", "--root", root, "--out", out).returncode == 0
        assert out.stat().st_mode & 0o777 == 0o600
        tokens.append(out.read_text().strip())
    return root, tokens


def _wait_for(predicate, what: str, root, seconds: float = 600):
    for _ in range(int(seconds * 2)):
        if predicate():
            return
        time.sleep(0.5)
    log = root / "private" / "aggregate.log"
    pytest.fail(f"no {what}: " + (log.read_text()[-2000:] if log.exists() else "no aggregate.log"))


def _accuracy(client: EdgeClient, csvs) -> float:
    """Top-1 accuracy of the device's installed (shared) model on every device's photos."""
    inst = client._active()
    hits = total = 0
    for csv in csvs:
        photos = client.list_labelled_photos(csv)
        _, logits = extract_features(client._runtime_for(inst), inst.manifest, [p.path for p in photos])
        hits += int((logits.argmax(1) == np.array([p.grade for p in photos])).sum())
        total += len(photos)
    return hits / total


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def test_three_devices_train_upload_and_the_hub_publishes_the_next_version(tmp_path, trained):
    work, csvs = trained
    root, tokens = _hub(tmp_path, work, min_updates=DEVICES)
    key = work / "keys" / "public.key"
    with HubProcess(root) as hub:
        homes = [tmp_path / f"tablet{d}" for d in range(DEVICES)]
        for home in homes:
            assert run_cli("edge_client", "sync", "--server", hub.url, "--key", key, "--home", home,
                           "--quiet").returncode == 0
        before = _accuracy(EdgeClient(homes[0]), csvs)

        # device 0 through the CLI: train, list, approve, upload
        r = run_cli("edge_client", "train", "--labels", csvs[0], "--epsilon", "5", "--json",
                    "--home", homes[0])
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["mode"] == "federated" and result["patients"] == PER_DEVICE // 2
        assert 4.9 < result["epsilon_spent"] <= 5.0 and result["base_version"] == 1
        listing = run_cli("edge_client", "updates", "list", "--home", homes[0]).stdout
        assert "pending" in listing
        token_file = tmp_path / "token-0"
        nothing = run_cli("edge_client", "updates", "upload", "--server", hub.url, "--token-file", token_file,
                          "--home", homes[0])
        assert "nothing approved" in nothing.stdout  # never uploaded without the user's approval
        assert run_cli("edge_client", "updates", "approve", str(result["update_id"]), "--home",
                       homes[0]).returncode == 0
        argv = run_cli("edge_client", "updates", "upload", "--server", hub.url, "--token", tokens[0], "--home", homes[0])
        assert argv.returncode == 2 and "visible to every user" in argv.stderr  # never a token in argv (ps)
        up = run_cli("edge_client", "updates", "upload", "--server", hub.url, "--home", homes[0],
                     env={"DOPAMINE_HUB_TOKEN": tokens[0]})
        assert up.returncode == 0 and "uploaded" in up.stdout, up.stdout + up.stderr

        # devices 1 and 2 through the API (what the app's Train screen calls)
        for d in (1, 2):
            client = EdgeClient(homes[d])
            stages = []
            res = client.train_round(csvs[d], "federated", 5.0, progress=lambda s, i, n: stages.append(s))
            assert stages[0] == "features" and stages[-1] == "training"
            assert [u.id for u in client.pending_updates()] == [res.update_id]
            client.approve_update(res.update_id)
            if d == 2:  # offline: the approved update waits, then goes when the hub is reachable
                offline = client.upload_updates(_dead_url(), tokens[d])
                assert offline.waiting == [res.update_id] and not offline.uploaded
                assert client.pending_updates()[0].status == "approved"
            report = client.upload_updates(hub.url, tokens[d])
            assert report.uploaded == [res.update_id], report.messages
            assert client.pending_updates() == []

        # the hub builds a candidate in the background; nothing is signed or served before approval
        _wait_for(lambda: "candidate version 2" in run_cli("hub", "pending", "--root", root).stdout,
                  "candidate version 2", root)
        assert [v["version"] for v in requests.get(hub.url + "/v1/versions").json()["versions"]] == [1]
        assert not (root / "versions" / "2").exists()
        pending = run_cli("hub", "pending", "--root", root).stdout
        assert "updates from 3 devices" in pending and "top-1 agreement" in pending, pending
        assert "privacy: ε = " in pending and "hub approve 2" in pending
        approved = run_cli("hub", "approve", "2", "--root", root)
        assert approved.returncode == 0 and "published version 2" in approved.stdout, approved.stderr
        assert requests.get(hub.url + "/v1/index.json").json()["latest"] == 2
        card = requests.get(hub.url + "/v1/versions/2/model-card").text
        assert "no secure aggregation" in card and "one patient" in card and "noised head change" in card
        assert "3 devices" in card and "σ" not in card  # distinct devices; no per-device constants
        per_device = re.search(r"device patients: \(ε ≤ ([0-9.]+), δ = 1e-05\)", card)
        assert per_device and 4.9 <= float(per_device.group(1)) <= 5.0, card[:600]
        both = re.search(r"a patient in both: at most ε = ([0-9.]+), δ = 2e-05", card)
        assert both and float(both.group(1)) >= BASE_EPSILON + 4.9, card  # composition (sum), not the max
        assert requests.get(hub.url + "/v1/artifacts/2/model.pt").status_code == 404  # the checkpoint stays private
        synced = EdgeClient(homes[0]).sync(hub.url)
        assert synced.updated and synced.version == 2
        # device 1 has not synced: its next update is for version 1, which the hub refuses
        late = EdgeClient(homes[1])
        old = late.train_round(csvs[1], "federated", 2.0)
        late.approve_update(old.update_id)
        report = late.upload_updates(hub.url, tokens[1])
        assert report.rejected == [old.update_id] and "409" in report.messages[0]
        assert late.update_queue()[0].status == "rejected"
    model = EdgeClient(homes[0]).installed_model()
    assert "basic composition" in model.privacy_model and model.epsilon >= BASE_EPSILON + 4.9 and model.delta == 2e-05
    after = _accuracy(EdgeClient(homes[0]), csvs)
    print(f"\naccuracy on the devices' {DEVICES * PER_DEVICE} photos: v1 {before:.3f} -> v2 {after:.3f}")
    assert after >= before - 0.02
    assert (root / "private" / "checkpoints" / "2" / "model.pt").is_file()
    assert run_cli("hub", "updates", "--root", root).stdout.count("aggregated") == DEVICES


def test_personal_head_is_used_for_diagnoses_and_shares_the_budget(tmp_path, trained):
    work, csvs = trained
    root, _ = _hub(tmp_path, work, min_updates=99)
    home = tmp_path / "tablet"
    with HubProcess(root) as hub:
        client = EdgeClient(home)
        client.sync(hub.url, public_key=work / "keys" / "public.key")
    photo = client.list_labelled_photos(csvs[1])[0].path
    assert client.diagnose(photo).personal_head is False
    settings = RoundSettings(budget=6.0)
    res = client.train_round(csvs[1], "personal", 5.0, settings=settings, seed=1)
    assert res.update_id is None and client.pending_updates() == []  # nothing queued: it stays here
    assert client.diagnose(photo).personal_head is True
    out = run_cli("edge_client", "diagnose", photo, "--home", home).stdout
    assert "personal head" in out
    status = client.budget_status(csvs[1])
    assert status.rounds == 1 and 4.9 < status.spent <= 5.0
    with pytest.raises(BudgetExceeded, match="over its budget"):  # federated draws from the same budget
        client.train_round(csvs[1], "federated", 5.0, settings=settings)
    r = run_cli("edge_client", "train", "--labels", csvs[1], "--budget", "6", "--home", home)
    assert r.returncode == 2 and "over its budget" in r.stderr and "Traceback" not in r.stderr


def test_bad_labels_are_reported_all_at_once(tmp_path, trained):
    work, csvs = trained
    bad = csvs[0].parent / "bad.csv"
    good = csvs[0].read_text().splitlines()[1]
    bad.write_text(f"image,grade,patient\n{good.split(',')[0]},7,p1\nmissing.png,1,p2\n{good.split(',')[0]},x,p3\n")
    r = run_cli("edge_client", "train", "--labels", bad, "--home", tmp_path / "t")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "row 2" in r.stderr and "row 3" in r.stderr and "row 4" in r.stderr


def test_hub_rejects_bad_updates(tmp_path, trained):
    work, csvs = trained
    root, tokens = _hub(tmp_path, work, min_updates=99, extra=("--rate-limit", "1000"))
    client = EdgeClient(tmp_path / "tablet")
    with HubProcess(root) as hub:
        client.sync(hub.url, public_key=work / "keys" / "public.key")
        res = client.train_round(csvs[2], "federated", 5.0)
        good = client.update_payload(res.update_id)
        url, auth = hub.url + "/v1/updates", {"Authorization": f"Bearer {tokens[0]}"}

        def post(payload, headers=auth):
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            return requests.post(url, data=body, headers=headers)

        first = post(good)
        assert first.status_code == 202
        again = post(good)  # the same bytes again (an answer lost): the same record, not a second update
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        cases = {
            400: [b"{not json", b"[" * 100_000 + b"]" * 100_000],  # deep nesting: 400, not a 500
            422: [{**good, "delta_weight": good["delta_weight"][:4]}, {**good, "delta_bias": [0.0] * 6},
                  {**good, "format": "other"}, {**good, "accountant": "prv"}, {**good, "epsilon": -1},
                  {**good, "delta_weight": [[float("nan")] * 512] * 5},
                  {**good, "delta_weight": [[999.0] * 512] * 5},  # far over the DP-SGD norm bound
                  {**good, "seeded": True}, {**good, "delta": 1e-3},  # δ not below 1/N for N = 10 000
                  {**good, "epsilon": 0.01},  # less than its own σ, q and steps cost
                  {**good, "learning_rate": 5.0}],  # over the hub's public limit
            409: [{**good, "base_version": 0},
                  {**good, "created": "2030-01-01T00:00:00Z"}],  # the same head change, other metadata: a replay
            413: [json.dumps({**good, "pad": "x" * 300_000}).encode()],
        }
        for status, payloads in cases.items():
            for payload in payloads:
                r = post(payload)
                assert r.status_code == status and r.json()["error"], (status, r.text[:200])
        assert post(good, {"Authorization": "Bearer dph_unknown"}).status_code == 401
        assert post(good, {}).status_code == 401
        assert run_cli("hub", "token", "revoke", "clinic-0", "--root", root).returncode == 0
        assert post(good).status_code == 403
        # the device keeps an update refused for its token, to retry with a valid one ...
        client.approve_update(res.update_id)
        assert client.upload_updates(hub.url, tokens[0]).waiting == [res.update_id]
        # ... but this head change already came in through the revoked token: another token cannot replay it
        replay = client.upload_updates(hub.url, tokens[1])
        assert replay.rejected == [res.update_id] and "replayed" in replay.messages[0], replay.messages
    listing = run_cli("hub", "updates", "--root", root).stdout
    assert listing.count("revoked") == 1 and listing.count("pending") == 0  # revocation dropped its update
