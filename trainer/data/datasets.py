"""Fundus data sets on disk: APTOS 2019, EyePACS 2015, a folder per grade; splits by patient.

Every sample has an integer grade 0-4 and a patient id; the unit of privacy and of splitting is
the patient (EyePACS' `<patient>_left` and `<patient>_right` are one patient). Loading checks
every row and every image header (format, mode, size: cheap, nothing decoded) and reports ALL bad
rows at once in one DatasetError; decode errors of the pixels surface later in `load_arrays`.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_client.preprocess import DEFAULT_MAX_PIXELS, ImageError, open_image

LAYOUTS = ("aptos", "eyepacs", "folders")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    """One image: its id, file, DR grade (0-4) and the patient it belongs to."""

    sample_id: str
    image_path: Path
    grade: int
    patient_id: str


class DatasetError(ValueError):
    """Bad data set: the message has one line per bad row ("train.csv row 7: ...")."""

    def __init__(self, problems: list[str], header: str = "") -> None:
        self.problems = list(problems)
        lines = ([header] if header else []) + self.problems
        super().__init__("\n".join(lines))


@dataclass
class FundusDataset:
    """A loaded data set: `.samples` in file order, `.layout` and `.root`."""

    root: Path
    layout: str
    samples: list[Sample] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def by_patient(self) -> dict[str, list[Sample]]:
        """All of each patient's images together, patients in order of first appearance."""
        return group_by_patient(self.samples)

    def one_per_patient(self, *, seed: int = 0) -> list[Sample]:
        """One image per patient (seeded choice); see `one_per_patient`."""
        return one_per_patient(self.samples, seed=seed)

    def grade_counts(self) -> list[int]:
        return np.bincount([s.grade for s in self.samples], minlength=5).tolist()


def eyepacs_patient(image_name: str) -> str:
    """`123_left` and `123_right` -> `123`; any other name is its own patient."""
    stem, _, eye = image_name.rpartition("_")
    return stem if stem and eye.lower() in ("left", "right") else image_name


def detect_layout(root: Path) -> str:
    """The layout of `root`: "aptos" (train.csv), "eyepacs" (trainLabels.csv) or "folders" (0/..4/)."""
    if (root / "train.csv").is_file():
        return "aptos"
    if (root / "trainLabels.csv").is_file():
        return "eyepacs"
    if any((root / str(g)).is_dir() for g in range(5)):
        return "folders"
    raise DatasetError([f"{root}: no train.csv (APTOS), trainLabels.csv (EyePACS) or grade folders 0/-4/ found"])


def load_dataset(root: str | Path, *, layout: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS) -> FundusDataset:
    """Load and check a data set.

    Args:
        root: the data set folder.
        layout: "auto", "aptos", "eyepacs" or "folders".
        max_pixels: images above this pixel count are bad rows.
    Returns:
        A FundusDataset with every sample checked (labels, ids, file exists, image header).
    Raises:
        DatasetError: listing every bad row (file and row number) at once.
        ValueError: an unknown layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError([f"{root}: data folder not found"])
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    if layout == "folders":
        samples, problems = _read_folders(root)
    else:
        csv_name, id_col, grade_col = ("train.csv", "id_code", "diagnosis") if layout == "aptos" else (
            "trainLabels.csv", "image", "level")
        samples, problems = _read_label_csv(root, layout, csv_name, id_col, grade_col)
    checked = []
    for label, sample in samples:
        try:
            open_image(sample.image_path, max_pixels=max_pixels, name=str(sample.image_path)).close()
            checked.append(sample)
        except ImageError as exc:
            problems.append(f"{label}: {exc}")
    if problems:
        raise DatasetError(problems, f"{root}: {len(problems)} bad row(s) in the {layout} data set:")
    if not checked:
        raise DatasetError([f"{root}: the {layout} data set has no images"])
    return FundusDataset(root=root, layout=layout, samples=checked)


def _parse_grade(text: str) -> int | str:
    """The grade as int, or a message saying why it is not a grade."""
    text = (text or "").strip()
    try:
        grade = int(text)
    except ValueError:
        return f"grade {text!r} is not an integer"
    return grade if 0 <= grade <= 4 else f"grade {grade} is outside 0-4"


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
    """Rows of a CSV as (line number, dict); line 1 is the header. Raises DatasetError on wrong columns."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            found = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in columns if c not in found]
            if missing:
                raise DatasetError([f"{path.name}: wrong columns {found}; expected {list(columns)} "
                                    f"(missing {missing})"])
            reader.fieldnames = found
            return [(reader.line_num, row) for row in reader]  # file line numbers, blank lines counted
    except UnicodeDecodeError:
        raise DatasetError([f"{path}: not a UTF-8 text CSV file"]) from None
    except csv.Error as exc:
        raise DatasetError([f"{path}: unreadable CSV ({exc})"]) from None


def _read_label_csv(root: Path, layout: str, csv_name: str, id_col: str, grade_col: str):
    problems: list[str] = []
    samples: list[tuple[str, Sample]] = []
    seen: dict[str, int] = {}
    if layout == "aptos":
        image_dirs, suffixes = [root / "train_images"], (".png",)
    else:
        image_dirs, suffixes = [root, root / "train"], (".jpeg", ".jpg", ".png")
    for row_no, row in _read_csv(root / csv_name, (id_col, grade_col)):
        label = f"{csv_name} row {row_no}"
        sid = (row.get(id_col) or "").strip()
        grade = _parse_grade(row.get(grade_col))
        bad = []
        if not sid:
            bad.append(f"empty {id_col}")
        elif sid in seen:
            bad.append(f"duplicated {id_col} {sid!r} (first on row {seen[sid]})")
        else:
            seen[sid] = row_no
        if isinstance(grade, str):
            bad.append(grade)
        path = None
        if sid:
            candidates = [d / f"{sid}{s}" for d in image_dirs for s in suffixes]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                bad.append(f"image file not found: {candidates[0]}")
        if bad:
            problems.append(f"{label}: " + "; ".join(bad))
            continue
        patient = eyepacs_patient(sid) if layout == "eyepacs" else sid
        samples.append((label, Sample(sid, path, grade, patient)))
    return samples, problems


def _read_folders(root: Path):
    problems: list[str] = []
    samples: list[tuple[str, Sample]] = []
    seen: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and entry.name not in {str(g) for g in range(5)}:
            problems.append(f"{entry}: folder name is not a grade 0-4")
    for grade in range(5):
        folder = root / str(grade)
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                problems.append(f"{path}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
                continue
            sid = path.stem
            if sid in seen:
                problems.append(f"{path}: duplicated id {sid!r} (also {seen[sid]})")
                continue
            seen[sid] = path
            samples.append((str(path), Sample(sid, path, grade, sid)))
    return samples, problems


def group_by_patient(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples grouped by patient, patients in order of first appearance."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.patient_id].append(s)
    return dict(groups)


def one_per_patient(samples: list[Sample], *, seed: int = 0) -> list[Sample]:
    """One image per patient, chosen with a seeded generator (so each patient is one DP unit).

    Returns:
        One sample per patient, patients in order of first appearance.
    """
    rng = np.random.default_rng(seed)
    return [group[rng.integers(len(group))] for group in group_by_patient(samples).values()]


def read_split_file(path: str | Path) -> dict[str, str]:
    """`id_code,split` CSV -> {id: split}; every bad row reported at once."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError([f"{path}: split file not found"])
    result, problems = {}, []
    for row_no, row in _read_csv(path, ("id_code", "split")):
        sid, split = (row.get("id_code") or "").strip(), (row.get("split") or "").strip()
        if not sid:
            problems.append(f"{path.name} row {row_no}: empty id_code")
        elif sid in result:
            problems.append(f"{path.name} row {row_no}: duplicated id_code {sid!r}")
        elif split not in SPLITS:
            problems.append(f"{path.name} row {row_no}: split {split!r} is not one of {', '.join(SPLITS)}")
        else:
            result[sid] = split
    if problems:
        raise DatasetError(problems, f"{path}: {len(problems)} bad row(s):")
    return result


def split_dataset(samples: list[Sample], *, split_file: str | Path | None = None, val_fraction: float = 0.1,
                  test_fraction: float = 0.2, seed: int = 0) -> dict[str, list[Sample]]:
    """Split into train/val/test by patient: from a split file, else seeded and stratified by grade.

    Args:
        samples: the data set's samples.
        split_file: `id_code,split` CSV naming every sample's split (train/val/test).
        val_fraction, test_fraction: of patients, when there is no split file.
        seed: same seed, same split.
    Returns:
        {"train": [...], "val": [...], "test": [...]}; a patient's images are all in one split.
    Raises:
        DatasetError: split file rows that are bad, missing, unknown, or that separate a patient.
        ValueError: fractions out of range, or too few patients for a training split.
    """
    if split_file is not None:
        return _apply_split_file(samples, read_split_file(split_file), Path(split_file).name)
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    groups = group_by_patient(samples)
    rng = np.random.default_rng(seed)
    strata: dict[int, list[str]] = defaultdict(list)
    for pid, group in groups.items():  # a patient's stratum is their worst eye
        strata[max(s.grade for s in group)].append(pid)
    assign: dict[str, str] = {}
    for grade in sorted(strata):
        pids = [strata[grade][i] for i in rng.permutation(len(strata[grade]))]
        k = len(pids)
        # Stochastic rounding keeps the expected sizes exact across small strata.
        n_test = min(k, int(np.floor(k * test_fraction + rng.random())))
        n_val = min(k - n_test, int(np.floor(k * val_fraction + rng.random())))
        for i, pid in enumerate(pids):
            assign[pid] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    out = {name: [s for s in samples if assign[s.patient_id] == name] for name in SPLITS}
    if not out["train"]:
        raise ValueError(f"only {len(groups)} patient(s): too few for a training split; lower the fractions")
    return out


def _apply_split_file(samples: list[Sample], mapping: dict[str, str], name: str) -> dict[str, list[Sample]]:
    problems = [f"{name}: sample {s.sample_id!r} ({s.image_path}) has no split" for s in samples
                if s.sample_id not in mapping]
    known = {s.sample_id for s in samples}
    problems += [f"{name}: id_code {sid!r} is not in the data set" for sid in mapping if sid not in known]
    for pid, group in group_by_patient(samples).items():
        splits = {mapping.get(s.sample_id) for s in group} - {None}
        if len(splits) > 1:
            problems.append(f"{name}: patient {pid!r} is split across {sorted(splits)}; keep a patient's images together")
    if problems:
        raise DatasetError(problems, f"{name}: {len(problems)} problem(s):")
    return {split: [s for s in samples if mapping[s.sample_id] == split] for split in SPLITS}
