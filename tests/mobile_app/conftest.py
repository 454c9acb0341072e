"""Build once per session what the app's tests share: a real signed export on a hub, a second version to publish
mid-test, the built-in key files the build step writes, and the photos a user would pick."""
import base64
import csv
import json
import shutil
import zipfile
from pathlib import Path

import pytest



def resign_as_version(dist: Path, out: Path, private_key: Path, version: int) -> Path:
    """A copy of a signed bundle as the next version, signed again by the same publisher (what
    `export all --version N` would write for the same weights, without re-exporting)."""
    from nacl.signing import SigningKey

    shutil.copytree(dist, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["model_version"] = version
    raw = json.dumps(manifest, indent=2).encode()
    (out / "manifest.json").write_bytes(raw)
    key = SigningKey(base64.b64decode(private_key.read_text().strip()))
    (out / "manifest.sig").write_text(base64.b64encode(key.sign(raw).signature).decode() + "\n")
    return out


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    """A hub folder holding one real, signed export (version 1), the same model signed as
    version 2 (published by the test mid-run), built-in key files, and the files a user picks."""
    import numpy as np
    import qrcode
    import torch
    from PIL import Image

    from edge_client.preprocess import PreprocessConfig
    from tests.helpers.bundles import run_cli
    from trainer.checkpoint import save_checkpoint
    from trainer.model import build_model

    work = tmp_path_factory.mktemp("app_ui")
    torch.manual_seed(0)
    save_checkpoint(work / "model.pt", build_model(), preprocess=PreprocessConfig(image_size=64).to_dict(),
                    mode="dopamine", privacy={"epsilon": 7.5, "delta": 1e-5, "accountant": "rdp",
                                              "privacy_model": "patient-level", "noise_multiplier": 1.0,
                                              "sample_rate": 0.1, "steps": 10, "clipping_norm": 2.0})
    for args in (("export", "keygen", "--out", work / "keys"),
                 ("export", "keygen", "--out", work / "other_keys"),        # a publisher this app must not trust
                 ("export", "all", "--checkpoint", work / "model.pt", "--out", work / "dist", "--formats",
                  "onnx,tflite", "--key", work / "keys" / "private.key", "--calibration-images", "8",
                  "--latency-runs", "2"),
                 ("hub", "init", "--root", work / "hub", "--publisher-key", work / "keys" / "public.key",
                  "--min-updates", "50"),   # the app's uploads are stored; no new version is built here
                 ("hub", "delegate", "--root", work / "hub", "--signing-key", work / "keys" / "private.key"),
                 ("hub", "publish", work / "dist", "--root", work / "hub"),
                 # the build step, as a release engineer runs it before buildozer: the key ships in the app
                 ("mobile_app.provision", "--key", work / "keys" / "public.key", "--out", work / "builtin_key.json"),
                 ("mobile_app.provision", "--key", work / "other_keys" / "public.key",
                  "--out", work / "builtin_other_key.json"),
                 ("trainer", "synth", "--out", work / "synth", "--n", "4", "--size", "128", "--seed", "3"),
                 ("trainer", "synth", "--out", work / "clinic", "--n", "20", "--size", "64", "--seed", "11")):
        r = run_cli(*args, timeout=600)
        assert r.returncode == 0, f"{args[:2]} failed: {r.stderr[-2000:]}"
    resign_as_version(work / "dist", work / "dist_v2", work / "keys" / "private.key", 2)
    token = run_cli("hub", "token", "issue", "--name", "clinic-tablet", "--root", work / "hub").stdout.strip()
    assert token
    with (work / "clinic" / "train.csv").open(newline="") as f:   # the specialist's grades, as the app reads them
        rows = [f"train_images/{r['id_code']}.png,{r['diagnosis']},{r['id_code']}" for r in csv.DictReader(f)]
    (work / "clinic" / "labels.csv").write_text("image,grade,patient\n" + "\n".join(rows) + "\n")
    bad_grade = rows[1].split(",")
    (work / "clinic" / "bad_labels.csv").write_text(f"image,grade,patient\n{rows[0]}\n{bad_grade[0]},7,{bad_grade[2]}\n"
                                                   "train_images/missing.png,1,p-missing\n")
    with zipfile.ZipFile(work / "clinic.zip", "w") as zf:            # what a phone's document picker hands over
        zf.write(work / "clinic" / "labels.csv", "clinic/labels.csv")
        for path in sorted((work / "clinic" / "train_images").glob("*.png")):
            zf.write(path, f"clinic/train_images/{path.name}")
    photos = sorted((work / "synth" / "train_images").glob("*.png"))[:2]
    Image.fromarray(np.full((128, 128, 3), 3, np.uint8)).save(work / "dark.png")      # quality gate: too dark
    (work / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)  # unreadable
    qrcode.make((work / "keys" / "public.key").read_text().strip()).save(work / "key_qr.png")
    return {"hub": work / "hub", "key": work / "keys" / "public.key", "dist_v2": work / "dist_v2",
            "builtin_key": work / "builtin_key.json", "builtin_other_key": work / "builtin_other_key.json",
            "key_qr": work / "key_qr.png", "photos": photos, "dark": work / "dark.png",
            "corrupt": work / "corrupt.png", "labels": work / "clinic" / "labels.csv", "labels_zip": work / "clinic.zip",
            "bad_labels": work / "clinic" / "bad_labels.csv",
            "grades": [int(r.split(",")[1]) for r in rows], "token": token}
