"""Build once per session what the app's tests share: a real signed export on a hub, a second version to publish
mid-test, the built-in key files the build step writes, and the photos a user would pick."""
import csv
import shutil
import zipfile

import pytest

from tests.helpers.bundles import resign_as_version



@pytest.fixture(scope="session")
def published(tmp_path_factory, bundle, export_keys):
    """A hub folder holding the session's one real, signed export (as version 1), the same model
    signed as version 2 (published by the test mid-run), built-in key files, and the files a user picks."""
    import numpy as np
    import qrcode
    from PIL import Image

    from tests.helpers.bundles import run_cli

    work = tmp_path_factory.mktemp("app_ui")
    shutil.copytree(export_keys[0].parent, work / "keys")
    resign_as_version(bundle, work / "dist", work / "keys" / "private.key", 1)
    for args in (("export", "keygen", "--out", work / "other_keys"),        # a publisher this app must not trust
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
