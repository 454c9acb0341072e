"""TEST-ONLY Flower ClientApp: the product's ClientApp with a hook that tests need and a
deployment must never have (the ServerApp's hook is in server.py: a module of its own, because
Flower's default executor imports this one in a new process for every message, and the server's
torch import made each SecAgg+ stage take 13 s here instead of 4).

- `stall_mod` (ClientApp): a SuperNode started with DOPAMINE_TEST_STALL_FILE=PATH in its
  environment checks PATH at each training stage; while it holds "ROUND:SECONDS", the hospital
  sleeps in that round's training stage after touching `stalled-round-ROUND` in its state dir, so
  a test can kill it mid-round (the dropout test). Without the file it never stalls, so the same
  running deployment serves the other tests first.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from federation.client_app import client_fn, guard_mod
from federation.config import NodeConfig, RunConfig

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
