"""End-to-end training on the tiny city: outputs, labels, exact resume, NaN guard."""
import json

import numpy as np
import pytest
import torch

from sfrs.config import Config, build_config, validate_config, with_schedule
from sfrs.models.network import load_network
from sfrs.training import trainer as trainer_module
from sfrs.training.softlabels import read_soft_labels
from sfrs.training.trainer import SFRSTrainer, TrainingError, _Interrupted
from tests.tiny import TINY_TRAINING


def tiny_config(*extra):
    config = with_schedule(build_config(Config, overrides=TINY_TRAINING + list(extra)), generations=2, epochs=1)
    validate_config(config)
    return config


def train(config, output, **kwargs):
    torch.manual_seed(config.seed)
    return SFRSTrainer(config, output, progress=False, log=lambda line: None, **kwargs).run()


def weights(path):
    return load_network(path).state_dict()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, private_cache):
    output = tmp_path_factory.mktemp("run")
    results = train(tiny_config(), output)
    return output, results


def test_run__writes_results_checkpoints_and_labels(uninterrupted):
    output, results = uninterrupted
    assert [g["generation"] for g in results["generations"]] == [0, 1]
    for gen in results["generations"]:
        assert set(gen["val"]) >= {"1", "5", "10"} and set(gen["test"]) >= {"1", "5", "10"}
    on_disk = json.loads((output / "results.json").read_text())
    assert on_disk["complete"] and on_disk["best"]["metric"] == "val R@5"
    assert "| gen |" in (output / "results.md").read_text()
    for name in ("best.pt", "final.pt", "checkpoints/gen0_ep0.pt", "checkpoints/gen1_final.pt", "checkpoints/last.pt"):
        assert (output / name).exists(), name
    assert load_network(output / "best.pt").out_dim == load_network(output / "final.pt").out_dim
    labels = read_soft_labels(output / "softlabels" / "gen1.h5")
    assert labels.similarities.shape[1:] == (3, 9) and labels.teacher_temperature == 0.07
    valid = labels.positive_ids >= 0
    assert np.all(np.abs(labels.similarities[valid]) <= 1.0 + 1e-5)
    assert list((output / "tb").glob("events.out.tfevents.*"))


def test_resume_after_interruption__equals_uninterrupted(uninterrupted, tmp_path):
    reference_dir, reference = uninterrupted
    config = tiny_config()
    # stop inside generation 0 (mid-chunk), then inside generation 1, then finish
    for stop in (3, 3):
        with pytest.raises(_Interrupted):
            train(config, tmp_path, stop_after_steps=stop)
    resumed = train(config, tmp_path)
    for a, b in zip(reference["generations"], resumed["generations"]):
        assert a["val"] == b["val"] and a["test"] == b["test"]
    final_ref, final_resumed = weights(reference_dir / "final.pt"), weights(tmp_path / "final.pt")
    for name in final_ref:
        torch.testing.assert_close(final_ref[name], final_resumed[name], rtol=0, atol=0)


def test_resume__refuses_another_config(uninterrupted):
    output, _ = uninterrupted
    with pytest.raises(Exception, match="optim.lr"):
        SFRSTrainer(tiny_config("optim.lr=0.5"), output, progress=False, log=lambda line: None).run()


def test_non_finite_loss__stops_naming_the_step(tmp_path, monkeypatch):
    original = trainer_module.Objective.__call__

    def poisoned(self, batch, descriptors):
        out = original(self, batch, descriptors)
        out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(trainer_module.Objective, "__call__", poisoned)
    with pytest.raises(TrainingError, match=r"non-finite loss at generation 0, epoch 0, step 0"):
        train(tiny_config(), tmp_path)
