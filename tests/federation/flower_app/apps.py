"""TEST-ONLY Flower apps: the product's ClientApp and ServerApp with two hooks that tests need
and a deployment must never have.

- `stall_mod` (ClientApp): a SuperNode started with DOPAMINE_TEST_STALL_FILE=PATH in its
  environment checks PATH at each training stage; while it holds "ROUND:SECONDS", the hospital
  sleeps in that round's training stage after touching `stalled-round-ROUND` in its state dir, so
  a test can kill it mid-round (the dropout test). Without the file it never stalls, so the same
  running deployment serves the other tests first.
- `RecordingStrategy` (ServerApp): writes w_0 and every round's aggregate S to OUT/trace.npz, so
  the parity tests compare them with the simulator's `RoundResult.aggregate`.
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.serverapp import ServerApp

from edge_client.fileio import atomic_write
from federation.client_app import client_fn, guard_mod
from federation.config import NodeConfig, RunConfig
from federation.server_app import run_server
from federation.strategy import DopamineStrategy

STALL_ENV = "DOPAMINE_TEST_STALL_FILE"


def stall_mod(msg, context, call_next):
    trigger = Path(os.environ.get(STALL_ENV, "/nonexistent"))
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS) if msg.has_content() else None
    if trigger.is_file() and configs is not None and str(configs.get(Key.STAGE)) == Stage.COLLECT_MASKED_VECTORS:
        stall_round, seconds = trigger.read_text().strip().split(":")
        if msg.metadata.group_id == stall_round:
            node = NodeConfig.from_flower(context.node_config, RunConfig.from_flower(context.run_config))
            (Path(node.state_dir) / f"stalled-round-{stall_round}").touch()
            time.sleep(float(seconds))
    return call_next(msg, context)


client_app = ClientApp(client_fn=client_fn, mods=[stall_mod, guard_mod, secaggplus_mod])


class RecordingStrategy(DopamineStrategy):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.aggregates: list[np.ndarray] = []

    def apply_aggregate(self, server_round, aggregate) -> None:
        self.aggregates.append(aggregate.numpy().copy())
        if self.run.out_dir:
            buffer = io.BytesIO()
            np.savez(buffer, w0=self.initial_weights.numpy(), aggregates=np.stack(self.aggregates))
            atomic_write(Path(self.run.out_dir) / "trace.npz", buffer.getvalue())
        super().apply_aggregate(server_round, aggregate)


server_app = ServerApp()


@server_app.main()
def main(grid, context) -> None:
    run_server(grid, context, strategy_cls=RecordingStrategy)
