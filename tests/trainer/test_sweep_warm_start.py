"""A warm start from a checkpoint starts from that model's own predictions, whatever `--seed`.

Found by the evidence sweep (issue 17): `--weights model.pt` used to load only the body and draw
the head afresh from the run's seed, so a run at another seed than the public model's started
near chance. `trainer.model.load_warm_start` now loads a Dopamine checkpoint whole.
"""
from __future__ import annotations

import numpy as np

from trainer.checkpoint import load_checkpoint
from trainer.cli import main
from trainer.config import resolve
from trainer.runner import Run, predict_probs


def test_a_warm_start_from_a_checkpoint_starts_from_its_predictions(tiny_fundus, tmp_path):
    public = tmp_path / "public"
    assert main(["train", "--mode", "central", "--data", str(tiny_fundus), "--out", str(public), "--rounds", "1",
                 "--image-size", "32", "--hospitals", "1", "--seed", "7", "--quiet", "--threads", "1"]) == 0
    config = resolve("dopamine", overrides=dict(data=str(tiny_fundus), out=str(tmp_path / "run"), image_size=32,
                                                hospitals=2, rounds=1, target_epsilon=8.0, seed=1, threads=1,
                                                weights=str(public / "model.pt"), weights_public=True))
    job = Run(config, progress=False)
    images = job.data.test[0]
    before = predict_probs(load_checkpoint(public / "model.pt")[0], images)
    start = predict_probs(job.model, images)
    np.testing.assert_allclose(start, before, atol=1e-5)
