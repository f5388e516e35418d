"""sfrs-train from the command line: plan, errors, and resume after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from click.testing import CliRunner

from sfrs.cli.train import main as train_main
from tests.tiny import TINY_TRAINING

SETS = [arg for item in TINY_TRAINING for arg in ("--set", item)]


def test_dry_run__prints_the_plan_without_training(tiny_city_root, tmp_path):
    result = CliRunner().invoke(
        train_main, ["--generations", "2", "--epochs", "1", "--output", str(tmp_path / "run"), "--dry-run"] + SETS,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "training queries kept" in result.output and "without a positive within 10 m" in result.output
    assert "generation 1: 1 epoch(s)" in result.output and "dry run" in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_key_and_bad_type__exit_2(tmp_path):
    for bad, fragment in (("optim.speed=3", "optim.speed"), ("optim.lr=[1]", "optim.lr")):
        result = CliRunner().invoke(train_main, ["--set", bad, "--dry-run", "--output", str(tmp_path)])
        assert result.exit_code == 2 and fragment in result.output and "Traceback" not in result.output


SFRS_TRAIN = os.path.join(os.path.dirname(sys.executable), "sfrs-train")

#: a loss term defined outside the package, with a learnable parameter and a buffer
PLUGIN = """
import torch
from sfrs.training import LossTerm, register_term


@register_term("pull")
class Pull(LossTerm):
    def __init__(self, options=None, context=None):
        super().__init__(options, context)
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, batch, descriptors):
        return (self.scale - descriptors.global_.sum(dim=1).mean()) ** 2

    def after_step(self):
        self.steps += 1
"""


def command(output):
    return [SFRS_TRAIN, "--generations", "2", "--epochs", "1", "--output", str(output), "--no-progress",
            "--deterministic", "--set", "plugins=[pull_term]", "--set", "loss.terms.pull.weight=0.5"] + SETS


def global_step(output):
    last = output / "checkpoints" / "last.pt"
    if not last.exists():
        return -1
    try:
        return torch.load(last, map_location="cpu", weights_only=False)["position"]["global_step"]
    except Exception:  # being replaced right now
        return -1


@pytest.mark.slow
def test_sigkill_then_resume__reaches_the_uninterrupted_numbers_and_term_state(tiny_city_root, tmp_path):
    (tmp_path / "pull_term.py").write_text(PLUGIN)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    reference = tmp_path / "reference"
    subprocess.run(command(reference), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while global_step(killed) < 6 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "results.json").exists() or not json.loads((killed / "results.json").read_text())["complete"]

    resumed = subprocess.run(command(killed) + ["--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    a = json.loads((reference / "results.json").read_text())["generations"]
    b = json.loads((killed / "results.json").read_text())["generations"]
    assert [(g["val"], g["test"]) for g in a] == [(g["val"], g["test"]) for g in b]
    wa = torch.load(reference / "final.pt", weights_only=False)["state_dict"]
    wb = torch.load(killed / "final.pt", weights_only=False)["state_dict"]
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    # the term trained (its parameter moved), and its state resumed bit for bit
    ta = torch.load(reference / "checkpoints" / "gen1_ep0.pt", weights_only=False)["terms"]
    tb = torch.load(killed / "checkpoints" / "gen1_ep0.pt", weights_only=False)["terms"]
    assert ta["pull.scale"].item() != 1.0 and ta["pull.steps"].item() == 4
    assert all(torch.equal(ta[k], tb[k]) for k in ta) and set(ta) == set(tb)
    assert "| hard | pull | soft | total |" in (killed / "results.md").read_text()


@pytest.mark.parametrize("term", ["simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg"])
def test_shipped_ssl_config__trains_from_the_command_line_with_finite_losses(term, tiny_city_root, tmp_path):
    """configs/ssl_<term>.yaml as a user runs it (self-supervised only), on the tiny city."""
    config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", f"ssl_{term}.yaml")
    output = tmp_path / "run"
    result = CliRunner().invoke(
        train_main, ["--config", config, "--generations", "1", "--epochs", "1", "--output", str(output),
                     "--no-progress"] + SETS, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((output / "results.json").read_text())
    [epoch] = results["epochs"]
    assert results["generations"][0]["terms"] == {term: 1.0}  # self-supervised only: no hard, no soft term
    assert set(epoch["losses"]) >= {term, "total"}
    assert all(torch.isfinite(torch.tensor(value)) for value in epoch["losses"].values()), epoch["losses"]
