"""Issue 12, trainer side: every guarantee tested as the attacker or the unlucky patient would.

- An attacker who reads a run's config.json must not be able to regenerate its noise.
- A target epsilon calibrates sigma; a sigma that would stop early is refused before training.
- A warm start from private weights composes their history, or is refused unless declared public.
- The model card shows no per-hospital grade histogram and says what is outside epsilon.
"""
import json

import pytest
import torch

from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.cli import main
from trainer.config import resolve
from trainer.dp.hospital import HospitalData
from trainer.model import build_model
from trainer.modes import make_mode
from trainer.privacy import compute_epsilon

COMMON = ["--image-size", "32", "--threads", "1", "--quiet", "--delta", "1e-3", "--hospitals", "3",
          "--sample-rate", "0.3", "--no-augment"]


def _hospitals():
    torch.manual_seed(0)
    return [HospitalData(torch.randn(8, 3, 32, 32), torch.randint(0, 5, (8,)), torch.arange(8)) for _ in range(3)]


def _one_round(**overrides):
    config = resolve("dopamine", overrides={"hospitals": 3, "sample_rate": 0.5, "noise_multiplier": 5.0,
                                            "augment": False, "dropout": 0.0, "learning_rate": 0.1,
                                            "per_sample_method": "functorch", **overrides})
    torch.manual_seed(config.seed)
    mode = make_mode("dopamine", model=build_model(dropout=0.0), hospitals=_hospitals(), config=config)
    start = mode.weights()
    mode.run_round(0)
    return mode, mode.weights() - start


def test_default_noise_cannot_be_regenerated_from_the_published_config():
    """Same config, same experiment seed, same data: the attacker's replay gives other noise."""
    first, step_a = _one_round()
    _, step_b = _one_round()
    assert first.config.noise_seed is None and not first.seeded
    assert all(g is None for g in first.noise_generators), "noise must come from the OS CSPRNG"
    assert not torch.allclose(step_a, step_b), "two runs of one config drew the same noise"


def test_a_noise_seed_reproduces_the_noise_and_is_marked():
    mode, step_a = _one_round(noise_seed=3)
    _, step_b = _one_round(noise_seed=3)
    assert torch.equal(step_a, step_b) and mode.seeded


def _train(tmp_path, name, *args):
    return main(["train", "--mode", "dopamine", "--data", str(tmp_path.parent / "data"), "--out",
                 str(tmp_path / name), *COMMON, *args])


@pytest.fixture
def data_dir(tiny_fundus, tmp_path):
    (tmp_path.parent / "data").unlink(missing_ok=True)
    (tmp_path.parent / "data").symlink_to(tiny_fundus)
    return tiny_fundus


def test_target_epsilon_calibrates_sigma_and_spends_the_budget(data_dir, tmp_path):
    assert _train(tmp_path, "run", "--target-epsilon", "2", "--rounds", "4") == 0
    _, ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    privacy = ckpt["privacy"]
    assert privacy["steps"] == 4 and not privacy["seeded"]
    assert 1.9 <= privacy["epsilon"] <= 2.0, privacy["epsilon"]   # calibrated to 1 %, rounded up
    assert privacy["histories"] == [[[privacy["noise_multiplier"], 0.3, 4]]]


def test_a_sigma_that_would_stop_early_is_refused_before_training(data_dir, tmp_path, capsys):
    assert _train(tmp_path, "run", "--target-epsilon", "2", "--noise-multiplier", "0.5", "--rounds", "50") == 2
    err = capsys.readouterr().err
    assert "noise multiplier 0.5" in err and "over the target 2" in err
    assert not (tmp_path / "run" / "state.pt").exists()


def _private_checkpoint(path, *, epsilon=3.0, history=((1.2, 0.3, 10),), mode="dopamine", seeded=False):
    privacy = {"epsilon": epsilon, "delta": 1e-3, "accountant": "rdp", "privacy_model": "patient-level",
               "noise_multiplier": history[0][0] if history else None, "sample_rate": 0.3,
               "steps": sum(h[2] for h in history), "clipping_norm": 1.0,
               "histories": [[list(h) for h in history]] if history else [], "seeded": seeded}
    return save_checkpoint(path, build_model(), preprocess={"image_size": 32}, mode=mode, privacy=privacy)


def test_warm_start_from_private_weights_composes_their_history(data_dir, tmp_path):
    prior = _private_checkpoint(tmp_path / "prior.pt")
    assert _train(tmp_path, "run", "--weights", str(prior), "--noise-multiplier", "1.2", "--rounds", "2") == 0
    _, ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    alone = compute_epsilon(noise_multiplier=1.2, sample_rate=0.3, steps=2, delta=1e-3)
    composed = compute_epsilon(noise_multiplier=1.2, sample_rate=0.3, steps=12, delta=1e-3)
    assert ckpt["privacy"]["epsilon"] >= composed > alone
    assert ckpt["privacy"]["histories"] == [[[1.2, 0.3, 10], [1.2, 0.3, 2]]]
    assert "composed" in (tmp_path / "run" / "model_card.md").read_text()


def test_warm_start_from_non_dp_or_seeded_weights_is_refused_unless_declared_public(data_dir, tmp_path, capsys):
    central = _private_checkpoint(tmp_path / "central.pt", epsilon=None, history=(), mode="central")
    seeded = _private_checkpoint(tmp_path / "seeded.pt", seeded=True)
    for weights, needle in ((central, "without differential privacy"), (seeded, "seeded")):
        assert _train(tmp_path, "run", "--weights", str(weights), "--noise-multiplier", "1.2", "--rounds", "1") == 2
        assert needle in capsys.readouterr().err
    assert _train(tmp_path, "pub", "--weights", str(central), "--weights-public", "--noise-multiplier", "1.2",
                  "--rounds", "1") == 0
    _, ckpt = load_checkpoint(tmp_path / "pub" / "model.pt")
    assert ckpt["privacy"]["warm_start"]["declared_public"] is True
    assert ckpt["privacy"]["histories"] == [[[1.2, 0.3, 1]]]
    assert "declared PUBLIC" in (tmp_path / "pub" / "model_card.md").read_text()


def test_public_state_dict_adds_nothing(data_dir, tmp_path):
    torch.save(build_model().state_dict(), tmp_path / "imagenet_like.pth")
    assert _train(tmp_path, "run", "--weights", str(tmp_path / "imagenet_like.pth"), "--noise-multiplier", "1.2",
                  "--rounds", "1") == 0
    _, ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["privacy"]["histories"] == [[[1.2, 0.3, 1]]] and ckpt["privacy"]["warm_start"]["public"]


def test_seeded_run_says_so_in_checkpoint_and_card(data_dir, tmp_path):
    assert _train(tmp_path, "run", "--noise-multiplier", "1.2", "--rounds", "1", "--noise-seed", "4") == 0
    _, ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert ckpt["privacy"]["seeded"] is True and "NO DP GUARANTEE" in card
    assert json.loads((tmp_path / "run" / "config.json").read_text())["noise_seed"] == 4


def test_card_has_no_grade_histogram_and_names_what_is_outside_epsilon(data_dir, tmp_path):
    assert _train(tmp_path, "run", "--noise-multiplier", "1.2", "--rounds", "1") == 0
    card = (tmp_path / "run" / "model_card.md").read_text()
    histogram = (tmp_path / "run" / "partition.txt").read_text().splitlines()[2]
    assert histogram.split()[3:] and " ".join(histogram.split()[3:]) not in card
    assert "g0" not in card and "validation split of the PRIVATE data" in card


def test_epsilon_cli_refuses_delta_at_or_above_one_over_n(capsys):
    assert main(["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "10",
                 "--delta", "1e-3", "--patients", "1000"]) == 2
    assert "below 1/N" in capsys.readouterr().err
    assert main(["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "10",
                 "--delta", "1e-4", "--patients", "1000"]) == 0
