"""sfrs-sweep from the command line: bad grids and mixed-up reruns are one line (exit 2),
and a real 2 values x 2 seeds sweep of the tiny city, with its best models evaluated on a
small datasets root, is summarised with the runs' own numbers."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from sfrs.cli.sweep import main as sweep_main
from tests.tiny import TINY_TRAINING

SETS = [arg for item in TINY_TRAINING + ["train.tensorboard_examples=0"] for arg in ("--set", item)]
PNG_MAGIC = b"\x89PNG"


def run(args):
    return CliRunner().invoke(sweep_main, args + ["--no-progress"], catch_exceptions=False)


def one_error_line(result):
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and errors[0].startswith("sfrs-sweep: error: ") and "Traceback" not in result.output
    return errors[0]


@pytest.mark.parametrize("grid, fragment", [
    ("model.input_size=[96,128", "--grid 'model.input_size=[96,128': unclosed '['"),
    ("optim.lr=0.1,,0.2", "empty value"),
    ("optim.lr=0.1,fast", "--grid 'optim.lr=0.1,fast': value 'fast': config key 'optim.lr' must be a number"),
    ("optim.speed=1,2", "unknown config key 'optim.speed'"),
    ("seed=1,2", "use --seeds or --seed-list"),
])
def test_bad_grid__one_line_exit_2_and_nothing_written(tmp_path, grid, fragment):
    result = run(["--grid", grid, "--output", str(tmp_path / "out")] + SETS)
    assert fragment in one_error_line(result)
    assert not (tmp_path / "out").exists()


def test_seed_options__exclusive_and_checked(tmp_path):
    assert "cannot be used together" in one_error_line(
        run(["--seeds", "2", "--seed-list", "0,1", "--output", str(tmp_path)]))
    assert "--seed-list '1,x'" in one_error_line(run(["--seed-list", "1,x", "--output", str(tmp_path)]))
    assert "the sweep sets the seed" in one_error_line(run(["--set", "seed=3", "--output", str(tmp_path)]))


def test_rerun_with_other_arguments__refused_naming_what_differs(tmp_path, tiny_city_root, monkeypatch):
    import sfrs.training

    monkeypatch.setattr(sfrs.training, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    from sfrs.sweep import SweepSpec, TrainOptions, claim_output, parse_grid

    first = SweepSpec(axes=tuple(parse_grid(["optim.lr=0.001,0.01"])), seeds=(0, 1),
                      options=TrainOptions(overrides=tuple(TINY_TRAINING) + ("train.tensorboard_examples=0",)))
    claim_output(tmp_path, first, first.command_line(tmp_path))
    (tmp_path / "runs" / "optim.lr=0.001" / "seed0").mkdir(parents=True)
    line = one_error_line(run(["--grid", "optim.lr=0.001,0.01", "--seeds", "3", "--output", str(tmp_path)] + SETS))
    assert "sweep.json" in line and "seeds: was [0, 1], now [0, 1, 2]" in line


@pytest.fixture(scope="module")
def datasets_root(tiny_city_root, tmp_path_factory):
    """pitts30k: the tiny city's test split in the VG layout (as sfrs-eval-all finds it)."""
    root = tmp_path_factory.mktemp("datasets")
    (root / "pitts30k" / "images").mkdir(parents=True)
    os.symlink(tiny_city_root / "images" / "test", root / "pitts30k" / "images" / "test")
    return root


@pytest.mark.slow
def test_real_sweep__two_values_two_seeds_summarised_with_the_runs_numbers(tiny_city_root, datasets_root, tmp_path):
    out = tmp_path / "sweep"
    args = ["--grid", "train.queries_per_epoch=8,16", "--seeds", "2", "--output", str(out), "--generations", "1",
            "--epochs", "1", "--transfer", str(datasets_root)] + SETS
    result = run(args)
    assert result.exit_code == 0, result.output
    assert "4 run(s) trained, 0 finished before, 0 failed" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["varied"] == ["train.queries_per_epoch"] and summary["seeds"] == [0, 1]
    assert summary["command"].startswith("sfrs-sweep --grid train.queries_per_epoch=8,16 --seeds 2 --output ")
    assert [c["name"] for c in summary["configurations"]] == ["train.queries_per_epoch=8", "train.queries_per_epoch=16"]
    for configuration in summary["configurations"]:
        assert configuration["finished"] == 2
        results = [json.loads((out / r / "results.json").read_text()) for r in configuration["runs"]]
        assert [r["config"]["seed"] for r in results] == [0, 1]
        assert {r["config"]["train"]["queries_per_epoch"] for r in results} == {configuration["values"]["train.queries_per_epoch"]}
        final = np.array([r["generations"][-1]["test"]["1"] for r in results])
        assert configuration["final"]["test"]["1"]["values"] == list(final)
        assert configuration["final"]["test"]["1"]["std"] == pytest.approx(final.std(ddof=1))
        best = np.array([r["best"]["test"]["5"] for r in results])
        assert configuration["best"]["test"]["5"]["mean"] == pytest.approx(best.mean())
        transfer = [json.loads((out / r / "transfer" / "report.json").read_text()) for r in configuration["runs"]]
        r1 = np.array([t["results"]["pitts30k"]["recall"]["1"] for t in transfer])
        assert configuration["transfer"]["pitts30k"]["1"]["mean"] == pytest.approx(r1.mean())
        # the tiny city's test split under another name: best.pt's own test recall
        assert list(r1) == [r["best"]["test"]["1"] for r in results]
    for name in ("summary.csv", "summary.md", "sweep.json"):
        assert (out / name).is_file()
    for name in ("generations_r1.png", "r1_vs_train.queries_per_epoch.png"):
        assert (out / name).read_bytes()[:4] == PNG_MAGIC
    assert "| train.queries_per_epoch=8 | pitts30k |" in (out / "summary.md").read_text()

    again = run(args)  # everything finished: nothing trained or evaluated again
    assert again.exit_code == 0 and "0 run(s) trained, 4 finished before, 0 failed" in again.output
    assert json.loads((out / "summary.json").read_text())["configurations"] == summary["configurations"]


def test_failed_run__named_with_its_log_the_others_kept_exit_1(tmp_path, tiny_city_root, monkeypatch):
    import sfrs.training
    from sfrs.errors import DataError
    from tests.sweep.planted import plant, planted_results

    def train(config, output, **kwargs):
        if config.seed == 1:
            raise DataError("queries/0001.jpg: cannot decode")
        plant(output, planted_results(config.optim.lr, config.seed))

    monkeypatch.setattr(sfrs.training, "train", train)
    result = run(["--grid", "optim.lr=0.01,0.02", "--seeds", "2", "--output", str(tmp_path)] + SETS)
    assert result.exit_code == 1, result.output
    assert "2 run(s) trained, 0 finished before, 2 failed" in result.output
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 2 and errors[0].startswith("sfrs-sweep: error: runs/optim.lr=0.01/seed1: queries/0001.jpg")
    assert str(tmp_path / "runs" / "optim.lr=0.01" / "seed1" / "train.log") in errors[0]
    assert [c["finished"] for c in json.loads((tmp_path / "summary.json").read_text())["configurations"]] == [1, 1]
