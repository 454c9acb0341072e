"""What the server writes in `out-dir`: results.json (per-round participants, ε, held-out
metrics, stop reason) and model.pt (the final weights as a trainer checkpoint)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch.nn.utils import vector_to_parameters

from edge_client.preprocess import PreprocessConfig
from federation.config import RunConfig
from edge_client.fileio import atomic_write


def server_evaluator(run: RunConfig, model: torch.nn.Module):
    """A callable(flat weights) -> metrics on the server's held-out set, or None without one."""
    if not run.eval_data:
        return None
    from federation.task import load_hospital
    from trainer.metrics import evaluate
    data = load_hospital(run.eval_data, image_size=run.image_size)
    params = [p for p in model.parameters() if p.requires_grad]

    @torch.no_grad()
    def evaluate_weights(weights: torch.Tensor) -> dict:
        vector_to_parameters(weights, params)
        model.eval()
        logits = torch.cat([model(data.images[i:i + 256]) for i in range(0, len(data.labels), 256)])
        loss = torch.nn.functional.cross_entropy(logits, data.labels).item()
        metrics = evaluate(data.labels.numpy(), torch.softmax(logits.double(), 1).numpy())
        return {"loss": loss, "accuracy": float(metrics["accuracy"]), "kappa": float(metrics["kappa"])}

    return evaluate_weights


class ResultsWriter:
    def __init__(self, run: RunConfig) -> None:
        self.run = run
        self.out = Path(run.out_dir) if run.out_dir else None
        self.started = time.time()
        self.warm_start = None   # trainer.warm_start.WarmStart, set by the ServerApp

    def _payload(self, strategy, status: str, reason: str) -> dict:
        run = self.run
        payload = {"status": status, "reason": reason, "mode": run.mode, "config": dict(run.__dict__),
                   "seconds": round(time.time() - self.started, 3)}
        if strategy is not None:
            payload.update({"rounds": strategy.rounds, "noise_multiplier": strategy.noise_multiplier,
                            "prescale": strategy.prescale.to_dict() if strategy.prescale else None,
                            "privacy": {"delta": run.delta, **strategy.privacy(),
                                        "accountant_delta": strategy.ledger.delta,
                                        "accountant": run.accountant,
                                        "seeded": run.noise_seed_or_none is not None,
                                        "history": [list(h) for h in strategy.ledger.history]}})
        return payload

    def _write(self, payload: dict) -> None:
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out / "results.json", json.dumps(payload, indent=1, default=str).encode())

    def start(self, strategy) -> None:
        self._write(self._payload(strategy, "running", ""))

    def finish(self, strategy, model, *, status: str, reason: str) -> None:
        self._write(self._payload(strategy, status, reason))
        if self.out is None or strategy is None:
            return
        vector_to_parameters(strategy.weights, [p for p in model.parameters() if p.requires_grad])
        from trainer.checkpoint import save_checkpoint
        from trainer.runner import privacy_model_text
        privacy = strategy.privacy()
        save_checkpoint(self.out / "model.pt", model, mode=self.run.mode,
                        preprocess=PreprocessConfig(image_size=self.run.image_size).to_dict(),
                        privacy={"epsilon": privacy.get("epsilon"), "delta": privacy.get("delta", self.run.delta),
                                 "accountant": self.run.accountant if privacy else None,
                                 "privacy_model": privacy_model_text(self.run.train_config()),
                                 "noise_multiplier": strategy.noise_multiplier or None,
                                 "sample_rate": self.run.sample_rate, "steps": privacy.get("steps", 0),
                                 "clipping_norm": self.run.clipping_norm,
                                 "histories": [[list(h) for h in hist] for hist in strategy.ledger.histories()]
                                 if privacy else [],
                                 "seeded": self.run.noise_seed_or_none is not None,
                                 "warm_start": self.warm_start.to_dict() if self.warm_start else None},
                        config=dict(self.run.__dict__), round_kept=len(strategy.rounds))

    def fail(self, exc: BaseException) -> None:
        self._write({"status": "failed", "reason": f"{type(exc).__name__}: {exc}".splitlines()[0],
                     "config": dict(self.run.__dict__)})
