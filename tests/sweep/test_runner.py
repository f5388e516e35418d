"""Running a sweep: finished runs skipped (planted), the others trained (in this process, a
stand-in for train) or as subprocesses two at a time, failures reported with their log and
the others kept going, a folder of another sweep refused, a killed run resumed."""
import json
import sys
import textwrap

import pytest

import sfrs.training
from sfrs.config.build import save_yaml
from sfrs.errors import ConfigError
from sfrs.sweep import SweepSpec, TrainOptions, claim_output, parse_grid, run_sweep
from sfrs.sweep.runner import CONSOLE_LOG, threads_per_run
from tests.sweep.planted import plant, planted_results


@pytest.fixture
def fake_train(monkeypatch):
    """sfrs.training.train writing planted results; lr 0.02 seed 1 fails like a bad data set."""
    calls = []

    def train(config, output, **kwargs):
        calls.append((config.optim.lr, config.seed, str(output)))
        if config.optim.lr == 0.02 and config.seed == 1:
            from sfrs.errors import DataError
            raise DataError("broken.jpg: cannot decode")
        save_yaml(config, output / "config.yaml")
        plant(output, planted_results(config.optim.lr, config.seed))

    monkeypatch.setattr(sfrs.training, "train", train)
    return calls


def test_run_sweep__finished_runs_skipped_the_others_trained_failures_reported(tiny_city_root, tmp_path, lr_spec,
                                                                               fake_train):
    out = tmp_path / "sweep"
    finished_before = out / "runs" / "optim.lr=0.01" / "seed1"
    plant(finished_before, planted_results(0.01, 1))
    killed = out / "runs" / "optim.lr=0.02" / "seed0"
    plant(killed, planted_results(0.02, 0, complete=False))
    lines = []
    outcome = run_sweep(lr_spec, out, command="sfrs-sweep test", progress=False, log=lines.append)
    assert outcome.skipped == ["runs/optim.lr=0.01/seed1"]
    assert [c[:2] for c in fake_train] == [(0.01, 0), (0.01, 2), (0.02, 0), (0.02, 1), (0.02, 2)]
    assert list(outcome.failed) == ["runs/optim.lr=0.02/seed1"]
    assert "broken.jpg: cannot decode" in outcome.failed["runs/optim.lr=0.02/seed1"]
    assert "train.log" in outcome.failed["runs/optim.lr=0.02/seed1"]
    assert any(line.startswith("optim.lr=0.02/seed1: failed: ") for line in lines)
    summary = json.loads((out / "summary.json").read_text())
    assert [c["finished"] for c in summary["configurations"]] == [3, 2]
    assert summary["command"] == "sfrs-sweep test"
    assert "## Failed runs" in (out / "summary.md").read_text()
    assert (out / "summary.csv").is_file() and (out / "generations_r1.png").is_file()

    fake_train.clear()  # the same command again: only the failed run is tried
    again = run_sweep(lr_spec, out, command="sfrs-sweep test", progress=False, log=lines.append)
    assert [c[:2] for c in fake_train] == [(0.02, 1)] and len(again.skipped) == 5


def test_run_sweep__another_sweeps_folder_is_refused_before_anything_runs(tiny_city_root, tmp_path, lr_spec,
                                                                         fake_train):
    claim_output(tmp_path, lr_spec, "sfrs-sweep first")
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["format"] == "sfrs-sweep" and record["seeds"] == [0, 1, 2] and record["command"] == "sfrs-sweep first"
    (tmp_path / "runs" / "optim.lr=0.01" / "seed0").mkdir(parents=True)  # a run has started
    for other, fragment in (
        (SweepSpec(axes=lr_spec.axes, seeds=(0, 1), options=lr_spec.options), "seeds: was [0, 1, 2], now [0, 1]"),
        (SweepSpec(axes=tuple(parse_grid(["optim.lr=0.01,0.03"])), seeds=lr_spec.seeds, options=lr_spec.options),
         "grid: was"),
        (SweepSpec(axes=lr_spec.axes, seeds=lr_spec.seeds, options=TrainOptions(generations=3)), "common.generations"),
    ):
        with pytest.raises(ConfigError) as caught:
            run_sweep(other, tmp_path, command="x", progress=False, log=lambda line: None)
        assert fragment in str(caught.value) and "another --output" in str(caught.value)
    assert fake_train == [] and [p.name for p in (tmp_path / "runs").iterdir()] == ["optim.lr=0.01"]


def test_claim_output__a_sweep_that_started_no_run_is_replaced(tmp_path, lr_spec):
    claim_output(tmp_path, lr_spec, "sfrs-sweep --dataset typo")
    other = SweepSpec(axes=lr_spec.axes, seeds=(0,), options=lr_spec.options)
    claim_output(tmp_path, other, "sfrs-sweep fixed")
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["seeds"] == [0] and record["command"] == "sfrs-sweep fixed"


def test_run_sweep__a_finished_run_with_another_configuration_is_refused(tiny_city_root, tmp_path, lr_spec,
                                                                         fake_train):
    run = lr_spec.plan()[0]
    folder = plant(tmp_path / run.folder, planted_results(0.01, 0))
    save_yaml(lr_spec.plan()[1].config, folder / "config.yaml")  # seed 1's configuration
    with pytest.raises(ConfigError, match="config.yaml: the finished run's configuration is not the one"):
        run_sweep(lr_spec, tmp_path, command="x", progress=False, log=lambda line: None)
    assert fake_train == []


#: stands in for ``sfrs-train`` in a subprocess: planted results, the thread count it was given
FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {repo!r})
    from tests.sweep.planted import plant, planted_results
    args = sys.argv[1:]
    output = args[args.index("--output") + 1]
    seed = int(args[args.index("--seed") + 1])
    lr = float([a for a in args if a.startswith("optim.lr=")][-1].split("=")[1])
    time.sleep(0.3)
    if lr == 0.02 and seed == 2:
        print("sfrs-train: error: out of memory in the data loader")
        sys.exit(2)
    with open(os.path.join(output, "threads"), "w") as f:
        f.write(os.environ["OMP_NUM_THREADS"] + " " + " ".join(args))
    plant(__import__("pathlib").Path(output), planted_results(lr, seed))
""")


def test_run_sweep__parallel_subprocesses_with_their_share_of_threads_and_failures_with_logs(
        tiny_city_root, tmp_path, lr_spec):
    from pathlib import Path

    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN.format(repo=str(Path(__file__).resolve().parents[2])))
    out = tmp_path / "sweep"
    outcome = run_sweep(lr_spec, out, command="x", parallel=2, progress=False, log=lambda line: None,
                        train_command=[sys.executable, str(script)])
    assert sorted(outcome.trained) == sorted(f"runs/optim.lr={lr}/seed{s}" for lr in (0.01, 0.02) for s in range(3)
                                             if (lr, s) != (0.02, 2))
    failed = outcome.failed["runs/optim.lr=0.02/seed2"]
    log = out / "runs" / "optim.lr=0.02" / "seed2" / CONSOLE_LOG
    assert "exit code 2" in failed and "out of memory in the data loader" in failed and str(log) in failed
    assert log.read_text().startswith("$ ")  # the command, then what it printed
    threads, *args = (out / "runs" / "optim.lr=0.01" / "seed1" / "threads").read_text().split(" ")
    assert int(threads) == threads_per_run(2)
    assert args[args.index("--seed") + 1] == "1" and "--no-progress" in args and "--generations" in args
    summary = json.loads((out / "summary.json").read_text())
    assert [c["finished"] for c in summary["configurations"]] == [3, 2]


@pytest.mark.slow
def test_run_sweep__a_killed_run_resumes_from_its_checkpoint(tiny_city_root, tmp_path, monkeypatch):
    from tests.tiny import TINY_TRAINING

    spec = SweepSpec(axes=(), seeds=(0,), options=TrainOptions(
        generations=1, epochs=1, overrides=tuple(TINY_TRAINING) + ("train.tensorboard_examples=0",)))
    real_train = sfrs.training.train
    steps = []

    def killed_after_two_steps(config, output, **kwargs):
        def on_step():
            steps.append(1)
            if len(steps) == 2:
                raise KeyboardInterrupt

        return real_train(config, output, on_step=on_step, **kwargs)

    monkeypatch.setattr(sfrs.training, "train", killed_after_two_steps)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path, command="x", progress=False, log=lambda line: None)
    run = tmp_path / "runs" / "default" / "seed0"
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "results.json").exists()
    monkeypatch.setattr(sfrs.training, "train", real_train)
    outcome = run_sweep(spec, tmp_path, command="x", progress=False, log=lambda line: None)
    assert outcome.trained == ["runs/default/seed0"]
    assert "resuming" in (run / "train.log").read_text()
    results = json.loads((run / "results.json").read_text())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["configurations"][0]["final"]["test"]["1"]["values"] == [results["generations"][-1]["test"]["1"]]
