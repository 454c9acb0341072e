"""`central`: one data holder, plain minibatch training (the paper's non-private bound)."""
from __future__ import annotations

from trainer.dp.hospital import pool_hospitals
from trainer.dp.local import local_sgd, torch_optimizer
from trainer.modes.base import Mode


class CentralMode(Mode):
    name = "central"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pooled = pool_hospitals(self.hospitals)
        self.optimizer = torch_optimizer(self.params, self.settings)

    def run_round(self, round_index: int) -> dict:
        c = self.config
        loss = local_sgd(self.model, self.pooled, epochs=1, batch_size=c.batch_size, settings=self.settings,
                         augment=self.augment, generator=self.server_generator, optimizer=self.optimizer)
        return {"loss": loss}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.optimizer.load_state_dict(state["optimizer"])
