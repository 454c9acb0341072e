"""`python -m federation split-data`: one data set -> one APTOS-layout folder per hospital plus the
server's held-out folder, as if each hospital had its own. For demos and tests; real hospitals
bring their own folders."""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
from pathlib import Path

from edge_client.fileio import atomic_write
from trainer.data.datasets import Sample, load_dataset, split_dataset
from trainer.data.partition import partition


def write_aptos(samples: list[Sample], out: Path) -> None:
    """Write samples as train.csv + train_images/ (hard links where possible, else copies)."""
    images = out / "train_images"
    images.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["id_code", "diagnosis"])
    for s in samples:
        target = images / f"{s.sample_id}{s.image_path.suffix}"
        if not target.exists():
            try:
                os.link(s.image_path, target)
            except OSError:
                shutil.copyfile(s.image_path, target)
        writer.writerow([s.sample_id, s.grade])
    atomic_write(out / "train.csv", text.getvalue().encode())


def split(data: str | Path, out: str | Path, *, hospitals: int, eval_fraction: float = 0.2,
          scheme: str = "iid", seed: int = 0) -> dict:
    """Returns {"hospitals": [dirs], "eval": dir, "sizes": [patients], "total": N, "max": max N_k}.

    Raises:
        ValueError: bad data (every bad row), too few patients, bad fraction.
    """
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"--eval-fraction must be in [0, 1), got {eval_fraction}")
    dataset = load_dataset(data)
    splits = split_dataset(dataset.samples, val_fraction=0.0, test_fraction=eval_fraction, seed=seed)
    parts = partition(splits["train"], hospitals, scheme=scheme, seed=seed)
    out = Path(out)
    dirs = []
    for k, part in enumerate(parts):
        write_aptos(part, out / f"hospital-{k}")
        dirs.append(str(out / f"hospital-{k}"))
    eval_dir = ""
    if splits["test"]:
        write_aptos(splits["test"], out / "server-eval")
        eval_dir = str(out / "server-eval")
    sizes = [len({s.patient_id for s in part}) for part in parts]
    return {"hospitals": dirs, "eval": eval_dir, "sizes": sizes, "total": sum(sizes), "max": max(sizes)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="data set folder (APTOS, EyePACS or folders layout)")
    parser.add_argument("--out", required=True, help="writes OUT/hospital-<k>/ and OUT/server-eval/")
    parser.add_argument("--hospitals", type=int, required=True, help="number of hospitals K")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="patients held out at the server")
    parser.add_argument("--scheme", default="iid", choices=("iid", "dirichlet", "quantity"))
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    info = split(args.data, args.out, hospitals=args.hospitals, eval_fraction=args.eval_fraction,
                 scheme=args.scheme, seed=args.seed)
    print(f"wrote {len(info['hospitals'])} hospital folders under {args.out} (patients {info['sizes']}), "
          f"held-out set {info['eval'] or 'none'}; declare total-patients={info['total']} "
          f"max-patients={info['max']}")
    return 0
