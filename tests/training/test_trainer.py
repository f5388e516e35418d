"""End-to-end training on the tiny city: outputs, the teacher's labels, exact resume, NaN guard."""
import json

import numpy as np
import pytest
import torch

from sfrs.config import load_config
from sfrs.data import load_image, open_dataset
from sfrs.models import load_network
from sfrs.training import Objective, TrainingError, train
from sfrs.training.mining import build_training_set
from sfrs.training.softlabels import read_soft_labels
from sfrs.training.trainer import Interrupted
from tests.tiny import TINY_TRAINING


def tiny_config(*extra):
    return load_config(overrides=TINY_TRAINING + list(extra), generations=2, epochs=1)


def run(config, output, stop_after=None):
    torch.manual_seed(config.seed)
    steps = []

    def on_step():
        steps.append(1)
        if stop_after is not None and len(steps) >= stop_after:
            raise Interrupted()

    return train(config, output, progress=False, log=lambda line: None, on_step=on_step)


def weights(path):
    return load_network(path).state_dict()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, private_cache):
    output = tmp_path_factory.mktemp("run")
    return output, run(tiny_config(), output)


def test_run__writes_results_checkpoints_and_labels(uninterrupted):
    output, results = uninterrupted
    assert [g["generation"] for g in results["generations"]] == [0, 1]
    assert results["generations"][1]["terms"] == {"hard": 1.0, "soft": 0.5}
    on_disk = json.loads((output / "results.json").read_text())
    assert on_disk["complete"] and on_disk["best"]["metric"] == "val R@5"
    table = (output / "results.md").read_text()
    assert "| gen | epoch | steps | hard | soft | total |" in table
    for name in ("best.pt", "final.pt", "config.yaml", "checkpoints/gen0_ep0.pt", "checkpoints/gen1_final.pt",
                 "checkpoints/last.pt"):
        assert (output / name).exists(), name
    assert list((output / "tb").glob("events.out.tfevents.*"))


def test_generation_one_labels__are_the_generation_zero_teachers_for_every_positive(uninterrupted):
    output, _ = uninterrupted
    labels = read_soft_labels(output / "softlabels" / "gen1.h5")
    split = open_dataset("synthetic:tiny", "train")
    ts = build_training_set(split, 10.0, 25.0)
    teacher = load_network(output / "checkpoints" / "gen0_final.pt").eval()
    transform = teacher.transform()
    for row in (0, ts.num_queries // 2, ts.num_queries - 1):
        # every positive within 10 m is labelled, so the student may pick any of them
        assert set(labels.positive_ids[row][labels.positive_ids[row] >= 0]) == set(ts.positives[row])
        with torch.no_grad():
            query = teacher(transform(load_image(split.query_paths[ts.query_ids[row]]))[None])[0].double()
            for slot in (0, len(ts.positives[row]) - 1):
                db = labels.positive_ids[row, slot]
                regions = teacher.region_descriptors(transform(load_image(split.database_paths[db]))[None])[0]
                np.testing.assert_allclose(labels.similarities[row, slot], (regions.double() @ query).numpy(), atol=1e-5)


def test_resume_after_interruption__equals_uninterrupted(uninterrupted, tmp_path):
    reference_dir, reference = uninterrupted
    config = tiny_config()
    # stop inside generation 0 (mid-chunk), then inside generation 1, then finish
    for stop in (3, 3):
        with pytest.raises(Interrupted):
            run(config, tmp_path, stop_after=stop)
    resumed = run(config, tmp_path)
    assert [(g["val"], g["test"]) for g in reference["generations"]] == [(g["val"], g["test"]) for g in resumed["generations"]]
    final_ref, final_resumed = weights(reference_dir / "final.pt"), weights(tmp_path / "final.pt")
    for name in final_ref:
        torch.testing.assert_close(final_ref[name], final_resumed[name], rtol=0, atol=0)


def test_resume__refuses_another_config(uninterrupted):
    output, _ = uninterrupted
    with pytest.raises(Exception, match="optim.lr"):
        run(tiny_config("optim.lr=0.5"), output)


def test_hard_negative_memory__carries_into_the_next_generation(uninterrupted):
    output, _ = uninterrupted
    end_of_gen0 = np.asarray(torch.load(output / "checkpoints" / "gen0_ep0.pt", weights_only=True)["miner"]["previous_hardest"])
    gen1 = np.asarray(torch.load(output / "checkpoints" / "gen1_ep0.pt", weights_only=True)["miner"]["previous_hardest"])
    mined_in_gen0 = np.all(end_of_gen0 >= 0, axis=1)
    mined_in_gen1 = np.any(gen1 != end_of_gen0, axis=1)
    # queries mined in generation 0 but not in generation 1 still remember their negatives
    remembered = mined_in_gen0 & ~mined_in_gen1
    assert remembered.any() and mined_in_gen1.any()
    assert np.array_equal(gen1[remembered], end_of_gen0[remembered])


def test_non_finite_loss__stops_naming_the_step(tmp_path, monkeypatch):
    original = Objective.forward

    def poisoned(self, batch):
        out = original(self, batch)
        out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(Objective, "forward", poisoned)
    with pytest.raises(TrainingError, match=r"non-finite loss at generation 0, epoch 0, step 0"):
        run(tiny_config(), tmp_path)


def test_eval_recall_at__chooses_the_recorded_recalls_and_the_best_metric(tmp_path):
    config = load_config(overrides=TINY_TRAINING + ["eval.recall_at=[1, 2, 3]", "train.best_metric=2"],
                         generations=1, epochs=1)
    results = run(config, tmp_path)
    assert results["best"]["metric"] == "val R@2"
    assert set(results["best"]["val"]) == set(results["generations"][0]["test"]) == {"1", "2", "3"}
    assert "| val R@1 | val R@2 | val R@3 |" in (tmp_path / "results.md").read_text()


def test_best_model__test_recall_and_pca_whitened_recall_match_an_independent_evaluation(tmp_path):
    """The model a user ships is measured on test: best.pt as is, and PCA-whitened with
    eval.pca_dim (the paper's numbers); both equal evaluating the saved files afresh."""
    from sfrs.retrieval import evaluate_split

    config = load_config(overrides=TINY_TRAINING + ["eval.pca_dim=8", "eval.pca_samples=60"], generations=1, epochs=1)
    results = run(config, tmp_path)
    best = results["best"]
    test = open_dataset("synthetic:tiny", "test")

    def recall(path):
        report = evaluate_split(load_network(path), test, batch_size=16)
        return {n: round(v, 2) for n, v in report["recall"].items()}

    assert best["test"] == recall(tmp_path / "best.pt")
    whitened = best["test_pca"]
    assert whitened["dim"] == 8 and whitened["model"] == str(tmp_path / "best_pca8.pt")
    assert load_network(tmp_path / "best_pca8.pt").out_dim == 8
    assert whitened["recall"] == recall(tmp_path / "best_pca8.pt")
    table = (tmp_path / "results.md").read_text()
    assert "`best.pt` on test: R@1" in table and "`best.pt` PCA-whitened to 8-d" in table
    assert json.loads((tmp_path / "results.json").read_text())["best"]["test_pca"] == whitened


def test_label_statistics__per_epoch_means_of_the_logged_steps_and_per_generation(uninterrupted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output, results = uninterrupted
    acc = EventAccumulator(str(output / "tb"), size_guidance={"scalars": 0}).Reload()
    gen0, gen1 = results["generations"]
    assert not any(name.startswith("soft/") for name in gen0["stats"])
    epoch = [e for e in results["epochs"] if e["generation"] == 1][0]
    first = sum(e["steps"] for e in results["epochs"] if e["generation"] == 0)
    for name in ("teacher_entropy", "uniform_entropy", "teacher_spread", "agreement"):
        logged = [s.value for s in acc.Scalars(f"stats/soft/{name}") if first <= s.step < first + epoch["steps"]]
        assert len(logged) == epoch["steps"]
        assert epoch["stats"][f"soft/{name}"] == pytest.approx(np.mean(logged), rel=1e-5)
        assert gen1["stats"][f"soft/{name}"] == pytest.approx(epoch["stats"][f"soft/{name}"])
        assert [s.step for s in acc.Scalars(f"generation/soft/{name}")] == [1]
    stats = gen1["stats"]
    # 3 difficult positives x 9 regions at most: uniform entropy <= log 27
    assert 0 < stats["soft/teacher_entropy"] <= stats["soft/uniform_entropy"] <= np.log(27) + 1e-9
    assert stats["soft/teacher_spread"] > 0
    table = (output / "results.md").read_text()
    assert "## Soft region labels" in table and "| 1 | 0.07 |" in table


def test_hard_only_twin__soft_term_weight_zero_trains_what_zero_soft_weights_train(tmp_path):
    # sfrs-sweep's ablation grid (loss.terms.soft.weight=1,0) and the per-generation form
    # (train.generations.*.soft_weight=0) must be one and the same hard-only run
    by_term = run(tiny_config("loss.terms.soft.weight=0"), tmp_path / "term")
    by_generation = run(tiny_config("train.generations.*.soft_weight=0"), tmp_path / "generation")
    assert [g["terms"] for g in by_term["generations"]] == [{"hard": 1.0}, {"hard": 1.0}]
    assert [g["terms"] for g in by_generation["generations"]] == [{"hard": 1.0}, {"hard": 1.0}]
    for left, right in zip(by_term["generations"], by_generation["generations"]):
        assert left["val"] == right["val"] and left["test"] == right["test"]
    a, b = weights(tmp_path / "term" / "final.pt"), weights(tmp_path / "generation" / "final.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


#: optimiser steps of the tiny schedule's generation 0 (16 queries, 4 tuples per step)
GENERATION_0_STEPS = 4


def test_resume__restores_the_loss_scale_of_a_scaled_run(tmp_path, monkeypatch):
    # fp16 on CUDA scales the loss; here a CPU scaler that doubles its scale after every
    # step stands in, so a resumed run that restarted the scale would end on another one
    from sfrs.training import trainer as trainer_module
    from sfrs.utils.checkpoint_file import load_checkpoint_file

    monkeypatch.setattr(trainer_module, "grad_scaler",
                        lambda device, precision: torch.amp.GradScaler("cpu", init_scale=2.0, growth_interval=1))
    config = tiny_config()

    def scale_after_generation_1(folder):
        epoch = sorted((folder / "checkpoints").glob("gen1_ep*.pt"))[-1]
        return load_checkpoint_file(epoch, False, what="training state", hint="")["scaler"]["scale"]

    run(config, tmp_path / "whole")
    with pytest.raises(Interrupted):
        run(config, tmp_path / "resumed", stop_after=GENERATION_0_STEPS + 3)  # inside generation 1
    run(config, tmp_path / "resumed")
    expected = scale_after_generation_1(tmp_path / "whole")
    assert expected > 2.0 ** 2  # it grew during generation 1
    assert scale_after_generation_1(tmp_path / "resumed") == expected
