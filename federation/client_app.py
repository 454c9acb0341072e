"""Flower ClientApp (one per hospital node): thin. The hospital's guards run as mods around
Flower's `secaggplus_mod`; `fit` calls the trainer's hospital step and returns only the
pre-scaled, noised share (masked by SecAgg+), `num_examples = max_weight` and no metrics.
"""
from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Context, Error, Message
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from federation.config import MODEL_VERSION, ConfigError, NodeConfig, RunConfig
from federation.node_state import NodeRefusal, check_participants, check_seed
from federation.secagg import MAX_WEIGHT

log = logging.getLogger("dopamine.hospital")
REFUSED = 600   # error code a hospital returns when it refuses (one-line reason)


class HospitalClient(NumPyClient):
    def __init__(self, run: RunConfig, node: NodeConfig, run_id: int) -> None:
        self.run, self.node, self.run_id = run, node, run_id

    def fit(self, parameters, config):
        # torch and the trainer load only here: the three other SecAgg+ stages stay light.
        from federation.task import Hospital, check_incoming, num_parameters
        run, node = self.run, self.node
        hospital = Hospital(run, node, run_id=self.run_id)
        weights = check_incoming(parameters[0], expected=num_parameters(hospital.model),
                                 model_version=str(config.get("model-version", "")), node_version=MODEL_VERSION)
        if run.mode == "dopamine":
            share = hospital.dopamine_share(weights)
            return [share], int(MAX_WEIGHT), {}
        local = hospital.local_weights(weights)
        return [local], hospital.data.num_patients, {}   # N_k is declared (public) for FedAvg weights


def client_fn(context: Context):
    run = RunConfig.from_flower(context.run_config)
    node = NodeConfig.from_flower(context.node_config, run)
    return HospitalClient(run, node, context.run_id).to_client()


def _participants(stage: str, configs: ConfigRecord) -> int | None:
    """How many hospitals this SecAgg+ stage says take part (None: the stage does not say)."""
    if stage == Stage.SETUP:
        return int(configs[Key.SAMPLE_NUMBER])
    if stage == Stage.COLLECT_MASKED_VECTORS:
        return len(configs[Key.SOURCE_LIST]) + 1          # neighbours that shared keys, plus itself
    if stage == Stage.UNMASK:
        return len(configs[Key.ACTIVE_NODE_ID_LIST])      # every active neighbour, itself included
    return None


def guard_mod(msg: Message, context: Context, call_next) -> Message:
    """Refuse (one-line reason, no traceback) a seed outside test mode, a round below K_min at any
    SecAgg+ stage (so the server can never unmask a sum of fewer than K_min shares), a foreign
    model or a spent budget. Runs before `secaggplus_mod`."""
    try:
        run = RunConfig.from_flower(context.run_config)
        node = NodeConfig.from_flower(context.node_config, run)
        check_seed(run.noise_seed_or_none, test_mode=node.test_mode)
        if run.model_version != MODEL_VERSION:
            raise NodeRefusal(f"model version mismatch: server runs {run.model_version!r}, this node has "
                              f"{MODEL_VERSION!r}; install the matching release on this node")
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS) if msg.has_content() else None
        if configs is not None and Key.STAGE in configs:
            participants = _participants(str(configs[Key.STAGE]), configs)
            if participants is not None:
                check_participants(participants, min_participants=max(run.k_min, node.min_participants))
        return call_next(msg, context)
    except (NodeRefusal, ConfigError) as exc:
        log.error("hospital refuses: %s", exc)
        return Message(Error(code=REFUSED, reason=f"hospital refuses: {exc}"), reply_to=msg)


app = ClientApp(client_fn=client_fn, mods=[guard_mod, secaggplus_mod])
