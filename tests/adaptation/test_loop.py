"""The EM loop on synthetic features: schedule, batches, pseudo-labels and recall improve,
exact resume after an interruption, refused state files."""
import numpy as np
import pytest
import torch

from sfrs.adaptation import (
    AdaptationError,
    AdaptationLoop,
    batch_rows,
    gallery_rows,
    load_adapt_config,
    lr_at,
    pseudo_labels,
)
from sfrs.adaptation.run import encode
from sfrs.errors import CheckpointError, ConfigError
from sfrs.models import Adapter


def views(seed, buildings=80, per_building=5, dim=64, latent=16, offset=1.5, noise=1.0):
    """Two views of the same buildings: related projections of a latent, a view-specific
    offset and noise (view A: ``per_building`` noisy images each; view B: one cleaner each)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(buildings, latent))
    project_a = rng.normal(size=(latent, dim))
    project_b = project_a + 0.7 * rng.normal(size=(latent, dim))
    scale = np.sqrt(latent)
    building_a = np.repeat(np.arange(buildings), per_building)
    a = z[building_a] @ project_a + offset * scale * rng.normal(size=dim) + noise * scale * rng.normal(size=(len(building_a), dim))
    b = z @ project_b + offset * scale * rng.normal(size=dim) + 0.3 * noise * scale * rng.normal(size=(buildings, dim))

    def normalise(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return normalise(a), normalise(b), building_a


def config(*extra):
    return load_adapt_config(
        overrides=["adapter.hidden_dim=128", "optim.steps=100", "optim.batch_size=200", "checkpoint_every=4", *extra],
        direct={"data.dataset": "synthetic features"},
    )


def make_loop(cfg, a, b, state_path, building_a, fingerprint="run"):
    torch.manual_seed(cfg.seed)
    adapter = Adapter(a.shape[1], cfg.adapter.hidden_dim, cfg.adapter.scale_init)
    return AdaptationLoop(
        adapter, torch.from_numpy(a), torch.from_numpy(b), cfg, state_path=state_path, fingerprint=fingerprint,
        is_positive=lambda rows_a, rows_b: building_a[rows_a] == rows_b,
    )


def test_lr_schedule__linear_warmup_then_cosine_to_zero():
    assert lr_at(0, 200, 2e-4, 1) == pytest.approx(1e-4)
    assert lr_at(1, 200, 2e-4, 1) == pytest.approx(2e-4)
    assert lr_at(100, 200, 2e-4, 0) == pytest.approx(1e-4)
    assert lr_at(199, 200, 2e-4, 1) == pytest.approx(2e-4 * 0.5 * (1 + np.cos(np.pi * 198 / 199)))
    assert all(lr_at(s, 50, 1.0, 5) > 0 for s in range(50))


def test_batches__every_row_once_per_epoch_and_a_function_of_seed_and_step():
    rows = np.concatenate([batch_rows(10, 4, step, seed=3) for step in range(5)])  # 20 rows = 2 epochs
    assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:]) == list(range(10))
    assert np.array_equal(batch_rows(10, 4, 2, 3), batch_rows(10, 4, 2, 3))
    assert not np.array_equal(batch_rows(10, 4, 2, 3), batch_rows(10, 4, 2, 4))
    assert np.array_equal(gallery_rows(7, 0, 5, 0), np.arange(7))
    subset = gallery_rows(50, 8, 5, 0)
    assert len(set(subset)) == 8 and np.all(np.diff(subset) > 0)


def test_adaptation__pseudo_labels_and_recall_improve_on_synthetic_views(tmp_path):
    a, b, building_a = views(seed=0)
    loop = make_loop(config(), a, b, tmp_path / "last.pt", building_a)
    history = loop.run(progress=False)
    assert len(history) == 100 and history[-1]["step"] == 99
    adapted_a, adapted_b = encode(loop.adapter, a, "cpu"), encode(loop.adapter, b, "cpu")

    def recall_at_1(x, y):
        return 100.0 * np.mean((x @ y.T).argmax(axis=1) == building_a)

    def labels(x, y):
        found = pseudo_labels(torch.from_numpy(x @ y.T), 0.1, 10)
        return found.count, found.precision(np.arange(len(x)), np.arange(len(y)), lambda r, c: building_a[r] == c)

    before, after = recall_at_1(a, b), recall_at_1(adapted_a, adapted_b)
    (count_before, precision_before), (count_after, precision_after) = labels(a, b), labels(adapted_a, adapted_b)
    assert after > before + 30, (before, after)  # measured: 28.0 -> 76.2
    assert precision_after > precision_before + 0.02, (precision_before, precision_after)  # 0.938 -> 0.970
    assert count_after > 1.5 * count_before, (count_before, count_after)  # 64 -> 134
    assert all(r["precision"] is not None for r in history)


@pytest.mark.parametrize("scope", ["batch", "whole_set"])
def test_resume__after_an_interruption_ends_with_the_uninterrupted_weights(tmp_path, scope):
    a, b, building_a = views(seed=1)
    cfg = config("optim.steps=14", f"pseudo_labels.scope={scope}")
    reference = make_loop(cfg, a, b, tmp_path / "reference.pt", building_a)
    reference.run(progress=False)

    class Interrupted(Exception):
        pass

    def stop_at_step_6(record):
        if record["step"] == 6:
            raise Interrupted()

    first = make_loop(cfg, a, b, tmp_path / "killed.pt", building_a)
    with pytest.raises(Interrupted):
        first.run(progress=False, on_step=stop_at_step_6)
    resumed = make_loop(cfg, a, b, tmp_path / "killed.pt", building_a)
    assert resumed.resume() and resumed.step == 4  # the last checkpoint, three steps before the interruption
    resumed.run(progress=False)
    for name, value in reference.adapter.state_dict().items():
        assert torch.equal(resumed.adapter.state_dict()[name], value), name
    assert resumed.history == reference.history
    # optimiser moments too: a resumed run is the same run
    for x, y in zip(reference.optimizer.state_dict()["state"].values(), resumed.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_state_file__of_another_run_or_unreadable_is_refused(tmp_path):
    a, b, building_a = views(seed=2, buildings=10)
    cfg = config("optim.steps=4", "optim.batch_size=20")
    make_loop(cfg, a, b, tmp_path / "last.pt", building_a).run(progress=False)
    other = make_loop(cfg, a, b, tmp_path / "last.pt", building_a, fingerprint="another run")
    with pytest.raises(CheckpointError, match="holds an adaptation of another checkpoint, data set or configuration"):
        other.resume()
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="last.pt: cannot read the adaptation state"):
        make_loop(cfg, a, b, tmp_path / "last.pt", building_a).resume()


def test_bad_inputs__one_row_views_and_non_finite_features(tmp_path):
    a, b, building_a = views(seed=3, buildings=10)
    with pytest.raises(ConfigError, match="view A gives 1 row"):
        make_loop(config("optim.batch_size=1"), a, b, tmp_path / "x.pt", building_a)
    b[3, 0] = np.nan  # view B is whole in every step
    with pytest.raises(AdaptationError, match="step 0: the loss is not finite"):
        make_loop(config("optim.batch_size=20"), a, b, tmp_path / "y.pt", building_a).run(progress=False)
