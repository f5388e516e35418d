"""sfrs-adapt end to end on the tiny synthetic sets: outputs, the adapted checkpoint read
by sfrs-eval, resume, one-line errors, and resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from sfrs.cli.adapt import main as adapt_main
from sfrs.cli.eval import main as eval_main
from sfrs.data.synthetic.cross_view import ensure_cross_view
from sfrs.models import load_network

#: a small adapter and a few steps: seconds on a CPU.
FAST = ["--set", "adapter.hidden_dim=64", "--steps", "6", "--set", "checkpoint_every=2", "--no-progress",
        "--batch-size", "64"]


@pytest.fixture(scope="module")
def cross_view_root(private_cache):
    return ensure_cross_view("tiny", seed=0, progress=False)


def adapt(*args):
    return CliRunner().invoke(adapt_main, [str(a) for a in args], catch_exceptions=False)


def sfrs_eval(*args):
    result = CliRunner().invoke(eval_main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_cross_view__outputs_and_adapted_checkpoint_read_by_sfrs_eval(cross_view_root, tiny_checkpoint, tmp_path):
    output = tmp_path / "adapt"
    result = adapt("--checkpoint", tiny_checkpoint, "--dataset", f"u1652:{cross_view_root}", "--output", output, *FAST)
    assert result.exit_code == 0, result.output
    assert "80 drone vs 20 satellite images" in result.output
    assert "test drone->satellite: R@1" in result.output and "AP" in result.output

    results = json.loads((output / "results.json").read_text())
    assert results["complete"] and results["cross_view"]
    assert [e["name"] for e in results["evaluations"]] == ["test drone->satellite", "test satellite->drone"]
    for evaluation in results["evaluations"]:
        for when in ("before", "after"):
            assert set(evaluation[when]["recall"]) == {"1", "5", "10", "20"} and evaluation[when]["ap"] is not None
    per_step = results["pseudo_labels"]["per_step"]
    assert [r["step"] for r in per_step] == list(range(6))
    assert all(r["precision"] is not None for r in per_step if r["labels_a"] + r["labels_b"])
    table = (output / "results.md").read_text()
    assert "| evaluation | queries | database | R@1 | R@5 | R@10 | R@20 | AP |" in table
    assert "| step | lr | mutual pairs |" in table
    assert list((output / "tb").glob("events.out.tfevents.*"))
    assert (output / "config.yaml").exists() and len(list((output / "features").glob("*.h5"))) == 6

    model = load_network(output / "adapted.pt")
    assert model.adapter is not None and model.out_dim == 64
    assert 1.0 / model.adapter.scale.item() == pytest.approx(results["temperature"]["final"])
    report_path = tmp_path / "eval.json"
    sfrs_eval("--checkpoint", output / "adapted.pt", "--dataset", f"u1652:{cross_view_root}", "--split", "test",
              "--json", report_path, "--no-progress")
    report = json.loads(report_path.read_text())
    after = results["evaluations"][0]["after"]
    assert report["descriptor_dim"] == 64
    for n, value in after["recall"].items():
        assert report["recall"][n] == pytest.approx(value, abs=1e-9), n


def test_same_view__city_target_and_rerun_resumes(tiny_city_root, tiny_checkpoint, tmp_path):
    output = tmp_path / "adapt"
    command = ["--checkpoint", tiny_checkpoint, "--dataset", "synthetic:tiny", "--output", output, *FAST]
    first = adapt(*command)
    assert first.exit_code == 0, first.output
    results = json.loads((output / "results.json").read_text())
    assert not results["cross_view"] and [e["name"] for e in results["evaluations"]] == ["val", "test"]
    assert results["views"]["a"]["name"] == "queries" and results["views"]["b"]["name"] == "database"

    report_path = tmp_path / "eval.json"
    sfrs_eval("--checkpoint", output / "adapted.pt", "--dataset", "synthetic:tiny", "--split", "test",
              "--json", report_path, "--no-progress")
    report = json.loads(report_path.read_text())
    assert report["recall"]["1"] == pytest.approx(results["evaluations"][1]["after"]["recall"]["1"], abs=1e-9)

    from sfrs.cli.eval_all import main as eval_all_main

    transfer = tmp_path / "transfer"
    everywhere = CliRunner().invoke(eval_all_main, [
        "--checkpoint", str(output / "adapted.pt"), "--datasets-root", str(tmp_path), "--datasets", str(tiny_city_root),
        "--output", str(transfer), "--no-progress"], catch_exceptions=False)
    assert everywhere.exit_code == 0, everywhere.output
    [row] = json.loads((transfer / "report.json").read_text())["results"].values()
    assert row["recall"]["1"] == pytest.approx(results["evaluations"][1]["after"]["recall"]["1"], abs=1e-9)

    again = adapt(*command)
    assert again.exit_code == 0 and "resuming at step 6 of 6" in again.output
    rerun = json.loads((output / "results.json").read_text())
    assert rerun["evaluations"] == results["evaluations"] and rerun["pseudo_labels"] == results["pseudo_labels"]

    other = adapt(*command, "--set", "optim.lr=0.1")
    assert other.exit_code == 2 and "holds an adaptation of another checkpoint" in other.output


@pytest.mark.parametrize("args, fragment", [
    (["--set", "optim.speed=3"], "unknown config key 'optim.speed'"),
    (["--set", "optim.lr=-1"], "optim.lr must be > 0"),
    (["--set", "adapter.batch_norm=both"], "adapter.batch_norm must be joint or per_view"),
    (["--dataset", "/no/such/folder"], "/no/such/folder: data set not found"),
    ([], "data.dataset: no target data set given (--dataset SPEC)"),
])
def test_bad_input__one_line_error_and_exit_code_2(tiny_checkpoint, tmp_path, args, fragment):
    if "--dataset" not in args and fragment != "data.dataset: no target data set given (--dataset SPEC)":
        args = ["--dataset", "synthetic:tiny", *args]
    result = CliRunner().invoke(adapt_main, ["--checkpoint", str(tiny_checkpoint), "--output", str(tmp_path / "x"), *args])
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_checkpoint__names_the_file(tiny_city_root, tmp_path):
    result = CliRunner().invoke(adapt_main, ["--checkpoint", str(tmp_path / "none.pt"), "--dataset", "synthetic:tiny",
                                             "--output", str(tmp_path / "x")])
    assert result.exit_code == 2 and "none.pt: checkpoint file not found" in result.output


SFRS_ADAPT = os.path.join(os.path.dirname(sys.executable), "sfrs-adapt")


def state_step(output):
    try:
        return torch.load(output / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["step"]
    except Exception:  # not written yet, or being replaced right now
        return -1


@pytest.mark.slow
def test_sigkill_then_rerun__ends_with_the_uninterrupted_adapter(cross_view_root, tiny_checkpoint, tmp_path):
    def command(output):
        return [SFRS_ADAPT, "--checkpoint", str(tiny_checkpoint), "--dataset", f"u1652:{cross_view_root}",
                "--output", str(output), "--no-progress", "--steps", "400", "--set", "adapter.hidden_dim=512",
                "--set", "checkpoint_every=10"]

    reference = tmp_path / "reference"
    subprocess.run(command(reference), check=True, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while state_step(killed) < 30 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the adaptation finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 30 <= state_step(killed) < 400 and not (killed / "adapted.pt").exists()
    resumed = subprocess.run(command(killed), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step" in resumed.stdout
    a = torch.load(reference / "adapted.pt", weights_only=False)["adapter"]["state_dict"]
    b = torch.load(killed / "adapted.pt", weights_only=False)["adapter"]["state_dict"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    ra = json.loads((reference / "results.json").read_text())
    rb = json.loads((killed / "results.json").read_text())
    assert ra["evaluations"] == rb["evaluations"] and ra["pseudo_labels"]["per_step"] == rb["pseudo_labels"]["per_step"]


@pytest.mark.parametrize("scope", ["batch", "whole_set"])
def test_scrambled_ground_truth__gives_the_same_adapter(tiny_city_root, tiny_checkpoint, tmp_path, monkeypatch, scope):
    """Training never reads coordinates: scrambling them changes the measured pseudo-label
    precision and recall, not one weight."""
    import dataclasses

    import numpy as np

    from sfrs.adaptation import adapt as adapt_library, load_adapt_config
    from sfrs.adaptation import target as target_module

    config = load_adapt_config(overrides=["adapter.hidden_dim=32", "optim.steps=5", f"pseudo_labels.scope={scope}"],
                               direct={"data.dataset": "synthetic:tiny"})
    honest = adapt_library(config, tiny_checkpoint, tmp_path / "honest", progress=False, log=lambda line: None)

    opened = target_module.open_dataset

    def scrambled(*args, **kwargs):
        split = opened(*args, **kwargs)
        rng = np.random.default_rng(7)
        return dataclasses.replace(split, query_utm=rng.permutation(split.query_utm),
                                   database_utm=rng.permutation(split.database_utm))

    monkeypatch.setattr(target_module, "open_dataset", scrambled)
    lied_to = adapt_library(config, tiny_checkpoint, tmp_path / "scrambled", progress=False, log=lambda line: None)

    a = torch.load(tmp_path / "honest" / "adapted.pt", weights_only=False)["adapter"]["state_dict"]
    b = torch.load(tmp_path / "scrambled" / "adapted.pt", weights_only=False)["adapter"]["state_dict"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["losses"] for r in run["pseudo_labels"]["per_step"]] for run in (honest, lied_to)]
    assert losses[0] == losses[1]
    precisions = [[r["precision"] for r in run["pseudo_labels"]["per_step"]] for run in (honest, lied_to)]
    assert precisions[0] != precisions[1]  # the scramble did reach what is measured
