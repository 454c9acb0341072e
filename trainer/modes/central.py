"""`central`: one data holder, plain minibatch SGD with momentum (the paper's non-private bound)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.modes.base import Mode, make_torch_optimizer


class CentralMode(Mode):
    name = "central"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pooled = _pool(self.hospitals)
        c = self.config
        self.optimizer = make_torch_optimizer(self.params, c)

    def run_round(self, round_index: int) -> dict:
        images, labels = self.pooled
        order = torch.randperm(len(labels), generator=self.server_generator)
        self.model.train()
        total, count = 0.0, 0
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start:start + self.config.batch_size]
            batch = images[idx]
            if self.augment is not None:
                batch = self.augment(batch, self.server_generator)
            device = self.params[0].device
            loss = F.cross_entropy(self.model(batch.to(device)), labels[idx].to(device))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        return {"loss": total / max(count, 1), "steps": -(-len(order) // self.config.batch_size)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])


def _pool(hospitals) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.cat([h.images for h in hospitals]), torch.cat([h.labels for h in hospitals]))
