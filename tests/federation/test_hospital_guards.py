"""A hospital's own guards, with the real ClientApp pieces: persisted accountant, budget, K_min at
every SecAgg+ stage, seed refusal outside test mode, model version, bad data, no plaintext metrics."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from federation.client_app import HospitalClient, guard_mod
from federation.config import ARCH, MODEL_VERSION, ConfigError, NodeConfig, RunConfig
from federation.node_state import LEDGER_FILE, HospitalState, NodeRefusal, check_participants, check_seed
from federation.secagg import MAX_WEIGHT
from federation.task import Hospital, check_incoming, flat_weights, run_prescale
from trainer.model import ARCH as TRAINER_ARCH


def test_arch_constant_matches_trainer():
    assert ARCH == TRAINER_ARCH


def test_ledger_persists_across_restarts_and_refuses_past_budget(tmp_path):
    state = HospitalState(tmp_path, delta=1e-5, accountant="rdp", target_epsilon=4.5)
    state.record(noise_multiplier=1.0, sample_rate=0.3)
    eps_one = state.epsilon()
    restarted = HospitalState(tmp_path, delta=1e-5, accountant="rdp", target_epsilon=4.5)
    assert restarted.ledger.steps == 1 and restarted.epsilon() == pytest.approx(eps_one)
    restarted.record(noise_multiplier=1.0, sample_rate=0.3)   # ε 4.24 after two steps: within 4.5
    with pytest.raises(NodeRefusal, match="privacy budget"):
        for _ in range(50):
            restarted.record(noise_multiplier=1.0, sample_rate=0.3)
    assert HospitalState(tmp_path, delta=1e-5, accountant="rdp", target_epsilon=4.5).epsilon() <= 4.5


def test_ledger_other_delta_or_corrupt_refused(tmp_path):
    HospitalState(tmp_path, delta=1e-5, accountant="rdp", target_epsilon=None).record(
        noise_multiplier=1.0, sample_rate=0.1)
    with pytest.raises(NodeRefusal, match="delta"):
        HospitalState(tmp_path, delta=1e-4, accountant="rdp", target_epsilon=None)
    (tmp_path / LEDGER_FILE).write_text("{not json")
    with pytest.raises(NodeRefusal, match="unreadable privacy ledger"):
        HospitalState(tmp_path, delta=1e-5, accountant="rdp", target_epsilon=None)


def test_seed_and_participants_guards():
    check_seed(None, test_mode=False)
    check_seed(3, test_mode=True)
    with pytest.raises(NodeRefusal, match="not in test mode"):
        check_seed(3, test_mode=False)
    check_participants(3, min_participants=3)
    with pytest.raises(NodeRefusal, match="below this hospital's minimum"):
        check_participants(2, min_participants=3)


@pytest.fixture(autouse=True)
def _task_identity():
    """Flower stamps messages with the running task's identity; set one as a ClientApp process has."""
    from flwr.supercore.task_identity import TaskIdentity
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 7
    yield


def _context(run: dict, node: dict) -> Context:
    return Context(run_id=1, node_id=7, node_config=node, state=RecordDict(), run_config=run)


def _stage_message(stage: str, **values) -> Message:
    configs = ConfigRecord({Key.STAGE: stage, **values})
    return Message(content=RecordDict({RECORD_KEY_CONFIGS: configs}), dst_node_id=7,
                   message_type=MessageType.TRAIN)


@pytest.mark.parametrize("stage, values, ok", [
    (Stage.SETUP, {Key.SAMPLE_NUMBER: 2}, False),
    (Stage.SETUP, {Key.SAMPLE_NUMBER: 3}, True),
    (Stage.COLLECT_MASKED_VECTORS, {Key.SOURCE_LIST: [1], Key.CIPHERTEXT_LIST: [b"x"]}, False),
    (Stage.UNMASK, {Key.ACTIVE_NODE_ID_LIST: [1, 7], Key.DEAD_NODE_ID_LIST: [2]}, False),
    (Stage.UNMASK, {Key.ACTIVE_NODE_ID_LIST: [1, 2, 7], Key.DEAD_NODE_ID_LIST: []}, True),
])
def test_guard_mod_refuses_rounds_below_k_min_at_every_stage(tmp_path, stage, values, ok):
    context = _context({"hospitals": 3}, {"data-dir": str(tmp_path), "state-dir": str(tmp_path)})
    called = []
    reply = guard_mod(_stage_message(stage, **values), context, lambda m, c: called.append(m) or m)
    assert bool(called) == ok
    if not ok:
        assert reply.has_error() and "K_min=3" in reply.error.reason


def test_guard_mod_refuses_a_noise_seed_outside_test_mode(tmp_path):
    context = _context({"noise-seed": 0}, {"data-dir": str(tmp_path), "state-dir": str(tmp_path)})
    reply = guard_mod(_stage_message(Stage.SETUP, **{Key.SAMPLE_NUMBER: 3}), context, lambda m, c: m)
    assert reply.has_error() and "OS CSPRNG" in reply.error.reason
    # The experiment seed (w_0, augmentation) is not the noise: a deployment accepts it.
    context = _context({"seed": 0}, {"data-dir": str(tmp_path), "state-dir": str(tmp_path)})
    reply = guard_mod(_stage_message(Stage.SETUP, **{Key.SAMPLE_NUMBER: 3}), context, lambda m, c: m)
    assert not reply.has_error()


def test_run_config_delta_must_be_below_one_over_declared_patients():
    with pytest.raises(ConfigError, match="below 1/N"):
        RunConfig(total_patients=60, max_patients=20, delta=0.02).check()
    RunConfig(total_patients=60, max_patients=20, delta=0.01).check()


def test_pyproject_defaults_are_run_config_defaults():
    """RunConfig is the one source of the run config's defaults; Flower reads them from pyproject."""
    import dataclasses
    import tomllib
    from pathlib import Path
    from tests.helpers.federation import TEST_APP
    for app in (Path("federation"), TEST_APP):
        config = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
        defaults = {f.name.replace("_", "-"): f.default for f in dataclasses.fields(RunConfig)}
        assert config == defaults, app


def test_private_init_weights_compose_or_are_refused(tmp_path):
    import torch
    from federation.server_app import initial_model
    from trainer.checkpoint import save_checkpoint
    from trainer.model import build_model
    central = save_checkpoint(tmp_path / "central.pt", build_model(), preprocess={"image_size": 32}, mode="central",
                              privacy={"epsilon": None})
    with pytest.raises(ConfigError, match="init-weights-public=true"):
        initial_model(RunConfig(init_weights=str(central)))
    _, warm = initial_model(RunConfig(init_weights=str(central), init_weights_public=True))
    assert warm.declared_public and warm.priors == [[]]
    private = save_checkpoint(tmp_path / "dp.pt", build_model(), preprocess={"image_size": 32}, mode="dopamine",
                              privacy={"epsilon": 2.0, "delta": 1e-5, "accountant": "rdp",
                                       "histories": [[[1.1, 0.1, 30]]]})
    model, warm = initial_model(RunConfig(init_weights=str(private)))
    assert warm.priors == [[(1.1, 0.1, 30)]] and isinstance(model, torch.nn.Module)


def test_bad_configs_named():
    with pytest.raises(ConfigError, match="unknown key 'roundz'"):
        RunConfig.from_flower({"roundz": 3})
    with pytest.raises(ConfigError, match="rounds must be int"):
        RunConfig.from_flower({"rounds": "many"})
    with pytest.raises(ConfigError, match="data-dir is missing"):
        NodeConfig.from_flower({"state-dir": "/tmp/x"}, RunConfig())
    with pytest.raises(ConfigError, match="min-participants"):
        RunConfig(min_participants=1).check()


def test_node_with_no_data_or_too_many_patients(fed_data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    run = RunConfig.from_flower({"total-patients": fed_data["total"], "max-patients": fed_data["max"]})
    with pytest.raises(ConfigError, match=f"node data-dir {empty}"):
        Hospital(run, NodeConfig(data_dir=str(empty), state_dir=str(tmp_path / "s")))
    with pytest.raises(ConfigError, match="does not exist"):
        Hospital(run, NodeConfig(data_dir=str(tmp_path / "nowhere"), state_dir=str(tmp_path / "s")))
    small = RunConfig.from_flower({"total-patients": 60, "max-patients": 5})
    with pytest.raises(NodeRefusal, match="max-patients=5") as refused:
        Hospital(small, NodeConfig(data_dir=fed_data["hospitals"][0], state_dir=str(tmp_path / "s")))
    # The refusal travels to the server: it must not carry this hospital's own patient count.
    assert f"{fed_data['sizes'][0]} patients" not in str(refused.value)
    assert str(fed_data["sizes"][0]) not in str(refused.value).replace("max-patients=5", "")


def test_model_version_and_size_checked():
    with pytest.raises(NodeRefusal, match="model version mismatch"):
        check_incoming(np.zeros(10, np.float32), expected=10, model_version="other/v9", node_version=MODEL_VERSION)
    with pytest.raises(NodeRefusal, match="sent 9 parameters"):
        check_incoming(np.zeros(9, np.float32), expected=10, model_version=MODEL_VERSION, node_version=MODEL_VERSION)


def test_fit_returns_only_the_prescaled_share_and_counts_the_round(fed_data, tmp_path):
    run = RunConfig.from_flower({"total-patients": fed_data["total"], "max-patients": fed_data["max"]})
    node = NodeConfig(data_dir=fed_data["hospitals"][0], state_dir=str(tmp_path / "state"))
    hospital = Hospital(run, node)
    weights = flat_weights(hospital.model).numpy()
    vectors, num_examples, metrics = HospitalClient(run, node, run_id=1).fit(
        [weights], {"server-round": 1, "model-version": MODEL_VERSION})
    assert metrics == {} and num_examples == int(MAX_WEIGHT)   # no loss, accuracy or batch size
    assert len(vectors) == 1 and vectors[0].shape == weights.shape
    scale = run_prescale(run, dimension=weights.size, noise_multiplier=1.0).scale
    # Deployment noise (CSPRNG): the share's spread is the noise share σC/√K_min, pre-scaled.
    assert np.std(vectors[0]) * scale == pytest.approx(1.0 / np.sqrt(3), rel=0.05)
    saved = json.loads((tmp_path / "state" / LEDGER_FILE).read_text())
    assert saved["ledger"]["history"] == [[1.0, run.sample_rate, 1]]
    shutil.rmtree(tmp_path / "state")
