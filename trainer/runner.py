"""The training loop: rounds, evaluation, the kept model, resumable state, progress, reports.

Run directory (all writes atomic):
  config.json    the fully resolved config
  state.pt       everything needed to resume: weights, optimiser/momentum, accountants, RNG states
  metrics.jsonl  one line per evaluated round
  model.pt       the round kept, chosen on VALIDATION (never test); ε is the whole run's
  model_card.md, confusion.png, curves.png, partition.txt
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from trainer.checkpoint import atomic_torch_save, save_checkpoint
from trainer.config import TrainConfig, validate
from edge_client.fileio import atomic_write_text
from trainer.data.augment import Augment
from trainer.metrics import evaluate
from trainer.model import build_model
from trainer.modes import make_mode
from trainer.prepare import PreparedData, prepare
from trainer.warm_start import WarmStart, read_warm_start
from trainer.model_card import write_model_card
from trainer.reports import best_on_validation, write_confusion_png, write_curves_png

STATE_FILE = "state.pt"


@torch.no_grad()
def predict_probs(model: torch.nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = [torch.softmax(model(images[i:i + batch].to(device)).double(), dim=1).cpu()
           for i in range(0, len(images), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, 5))


def evaluate_split(model, split: tuple[torch.Tensor, torch.Tensor]) -> dict:
    images, labels = split
    return evaluate(labels.numpy(), predict_probs(model, images))


def privacy_model_text(config: TrainConfig) -> str:
    if not config.private:
        return "none (no differential privacy)"
    text = "patient-level (add/remove one patient), honest-but-curious server"
    if config.mode == "dopamine":
        k_min = config.min_participants or config.hospitals
        text += (f", secure aggregation, noise shares sized for K_min={k_min} surviving hospitals"
                 f" with up to t={config.colluders} colluding")
    if config.mode == "fl-parallel-dp":
        text += ", each hospital adds full noise; epsilon is the max over hospitals"
    return text


def epoch_of(config: TrainConfig, round_index: int) -> float:
    """Passes over the training data after `round_index` rounds (the paper's x-axis)."""
    if config.mode == "dopamine":
        return round_index * config.sample_rate
    if config.mode in ("fedavg", "fl-parallel-dp"):
        return round_index * config.client_fraction * config.local_epochs
    return float(round_index)


class Run:
    """One training run in a run directory; `Run.resume(dir)` continues a killed one."""

    def __init__(self, config: TrainConfig, *, progress: bool = True) -> None:
        self.config = config
        self.out = Path(config.out)
        self.progress = progress
        if config.threads:
            torch.set_num_threads(config.threads)
        if config.seed is not None:
            torch.manual_seed(config.seed)   # init and augmentation only: the DP noise never uses it
        if config.noise_seed is not None:
            from trainer.dp.noise import NOISE_SEED_WARNING
            print(f"warning: --noise-seed: {NOISE_SEED_WARNING}", file=sys.stderr)
        self.warm_start: WarmStart = read_warm_start(config.weights, declared_public=config.weights_public,
                                                     private_run=config.private)
        self.data: PreparedData = prepare(config)
        self.model = build_model(5, weights=config.weights, dropout=config.dropout).to(config.device)
        self.mode = make_mode(config.mode, model=self.model, hospitals=self.data.hospitals, config=config,
                              augment=Augment(self.data.preprocess), priors=self.warm_start.priors)
        self.rows: list[dict] = []
        self.round = 0
        self.stop_reason = "completed all rounds"

    @classmethod
    def resume(cls, run_dir: str | Path, *, progress: bool = True) -> "Run":
        run_dir = Path(run_dir)
        state_path = run_dir / STATE_FILE
        if not state_path.is_file():
            raise ValueError(f"{run_dir}: nothing to resume (no {STATE_FILE}); start a new run instead")
        try:
            config = TrainConfig(**json.loads((run_dir / "config.json").read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"{run_dir / 'config.json'}: cannot resume from it ({exc})") from None
        config.out = str(run_dir)
        validate(config)
        run = cls(config, progress=progress)
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        run.mode.load_state_dict(state["mode"])
        run.rows = state["rows"]
        run.round = state["round"]
        torch.set_rng_state(state["torch_rng"])
        return run

    def _save_state(self) -> None:
        atomic_torch_save({"round": self.round, "mode": self.mode.state_dict(), "rows": self.rows,
                           "torch_rng": torch.get_rng_state()}, self.out / STATE_FILE)
        atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows))

    def _evaluate(self, diagnostics: dict, seconds: float) -> dict:
        val = evaluate_split(self.model, self.data.val)
        test = evaluate_split(self.model, self.data.test)
        privacy = self.mode.privacy() or {}
        row = {"round": self.round, "epoch": round(epoch_of(self.config, self.round), 4),
               "loss": diagnostics.get("loss"), "val_accuracy": val["accuracy"], "val_kappa": val["kappa"],
               "test_accuracy": test["accuracy"], "test_kappa": test["kappa"],
               "test_per_class_recall": test["per_class_recall"],
               "test_referable_sensitivity": test["referable_sensitivity"],
               "test_referable_specificity": test["referable_specificity"],
               "test_referable_auc": test["referable_auc"], "test_ece": test["ece"],
               "epsilon": privacy.get("epsilon"), "delta": privacy.get("delta"),
               "accountant": privacy.get("accountant"), "seconds": round(seconds, 3)}
        if "epsilon_mean" in privacy:
            row["epsilon_mean"] = privacy["epsilon_mean"]
        return row | {"_val": val, "_test": test}

    def _keep_if_best(self, row: dict) -> None:
        if best_on_validation(self.rows)["round"] != row["round"]:
            return
        self._write_model(row)

    def _write_model(self, row: dict) -> None:
        c = self.config
        privacy = self.mode.privacy() or {}
        save_checkpoint(self.out / "model.pt", self.model, preprocess=self.data.preprocess.to_dict(), mode=c.mode,
                        privacy=self._privacy_block(privacy),
                        metrics={"val": row["_val"], "test": row["_test"]}, config=c.to_dict(),
                        round_kept=row["round"])

    def _privacy_block(self, privacy: dict) -> dict:
        """The checkpoint's privacy block (docs/CONTRACTS.md "Checkpoint")."""
        c = self.config
        return {"epsilon": privacy.get("epsilon"), "delta": privacy.get("delta"),
                "accountant": privacy.get("accountant"), "privacy_model": privacy_model_text(c),
                "noise_multiplier": getattr(self.mode, "noise_multiplier", None),
                "sample_rate": getattr(self.mode, "sample_rate", None), "steps": privacy.get("steps", 0),
                "clipping_norm": c.clipping_norm if c.private else None,
                "histories": [[list(h) for h in history] for history in self.mode.histories()],
                "seeded": c.private and c.noise_seed is not None,
                "warm_start": self.warm_start.to_dict()}

    def train(self) -> Path:
        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.json", json.dumps(c.to_dict(), indent=2))
        atomic_write_text(self.out / "partition.txt", self.data.summary + "\n")
        bar = tqdm(total=c.rounds, initial=self.round, disable=not self.progress, unit="round",
                   desc=c.mode, dynamic_ncols=True)
        started = time.time()
        while self.round < c.rounds:
            if c.private and not self.mode.can_continue():
                self.stop_reason = f"stopped before round {self.round + 1}: it would exceed target epsilon {c.target_epsilon}"
                break
            diagnostics = self.mode.run_round(self.round)
            self.round += 1
            if self.round % c.eval_every == 0 or self.round == c.rounds:
                row = self._evaluate(diagnostics, time.time() - started)
                self.rows.append({k: v for k, v in row.items() if not k.startswith("_")})
                self._keep_if_best(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", val_acc=f"{row['val_accuracy']:.3f}",
                                eps="-" if row["epsilon"] is None else f"{row['epsilon']:.2f}")
            self._save_state()
            bar.update(1)
        bar.close()
        return self.finish()

    def finish(self) -> Path:
        """Reports for the kept model: whole-run ε in model.pt, card, confusion matrix, curves."""
        from trainer.checkpoint import load_checkpoint
        if not self.rows:
            raise ValueError("no round was evaluated: the privacy budget allowed no round; raise "
                             "--target-epsilon or lower --rounds")
        model, checkpoint = load_checkpoint(self.out / "model.pt")
        # The kept round was chosen after every round ran: report the whole run's ε.
        checkpoint["privacy"] = self._privacy_block(self.mode.privacy() or {})
        atomic_torch_save(checkpoint, self.out / "model.pt")
        synthetic = (Path(self.config.data) / "synth.json").is_file()  # `trainer synth` leaves this marker
        write_model_card(self.out / "model_card.md", checkpoint,
                         extra={"stop_reason": self.stop_reason, "synthetic": synthetic,
                                # declared sizes only: grade histograms of private patients stay in partition.txt
                                "patients per hospital": [h.num_patients for h in self.data.hospitals]})
        test = checkpoint["metrics"]["test"]
        write_confusion_png(test["confusion"], checkpoint["class_names"], self.out / "confusion.png",
                            title=f"{self.config.mode}: test confusion (round {checkpoint['round']})")
        write_curves_png(self.rows, self.out / "curves.png", title=f"{self.config.mode} training")
        return self.out / "model.pt"
