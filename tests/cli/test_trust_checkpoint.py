"""A checkpoint holding pickled objects (one shared by someone, or an older format) is
refused by every command that opens a given checkpoint: exit code 2, one line naming the
file and the flag; ``--trust-checkpoint`` loads it."""
import os
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sfrs.cli.adapt import main as adapt_main
from sfrs.cli.eval import main as eval_main
from sfrs.cli.train import main as train_main
from tests.tiny import TINY_TRAINING
from tools.eval_all import main as eval_all_main


class MakesADirectory:
    """Unpickling it calls ``os.makedirs(path)``: stands for any code a file can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.makedirs, (self.path,)


def sets(items):
    return [arg for item in items for arg in ("--set", item)]


def invoke(command, args):
    return CliRunner().invoke(command, [str(a) for a in args] + ["--no-progress"], catch_exceptions=False)


def assert_refused(result, path):
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert f"{path}: contains objects that could run code" in errors[0] and "--trust-checkpoint" in errors[0]


def checkpoint_with_code(tiny_checkpoint, folder):
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["note"] = MakesADirectory(folder / "code_ran")
    torch.save(payload, folder / "shared.pt")
    return folder / "shared.pt"


def version_2_training_state(tiny_checkpoint, folder):
    """What sfrs-train wrote before version 3: numpy arrays and numpy's generator tuple."""
    torch.save({
        "format": "sfrs-train-state", "version": 2, "model": torch.load(tiny_checkpoint, weights_only=True),
        "miner": {"previous_hardest": np.full((4, 3), -1, dtype=np.int64)},
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }, folder / "gen0_ep0.pt")
    return folder / "gen0_ep0.pt"


@pytest.mark.parametrize("make", [checkpoint_with_code, version_2_training_state])
def test_sfrs_eval__refuses_then_evaluates_with_trust_checkpoint(make, tiny_checkpoint, tiny_city_root, tmp_path):
    path = make(tiny_checkpoint, tmp_path)
    args = ["--checkpoint", path, "--dataset", "synthetic:tiny", "--recall-at", "1"]
    assert_refused(invoke(eval_main, args), path)
    assert not (tmp_path / "code_ran").exists()
    trusted = invoke(eval_main, args + ["--trust-checkpoint"])
    assert trusted.exit_code == 0, trusted.output
    assert "R@1" in trusted.output
    assert (tmp_path / "code_ran").is_dir() == (make is checkpoint_with_code)


def test_other_commands__refuse_it_naming_the_file(tiny_checkpoint, tiny_city_root, tmp_path):
    path = checkpoint_with_code(tiny_checkpoint, tmp_path)
    datasets_root = tmp_path / "datasets"
    (datasets_root / "pitts30k" / "images").mkdir(parents=True)
    os.symlink(tiny_city_root / "images" / "test", datasets_root / "pitts30k" / "images" / "test")
    runs = [
        (train_main, ["--init-from", path, "--generations", "1", "--epochs", "1", "--output", tmp_path / "train"]
         + sets(TINY_TRAINING)),
        (adapt_main, ["--checkpoint", path, "--dataset", "synthetic:tiny", "--output", tmp_path / "adapt"]),
        (eval_all_main, ["--checkpoint", path, "--datasets-root", datasets_root, "--output", tmp_path / "all"]),
    ]
    for command, args in runs:
        assert_refused(invoke(command, args), path)
    assert not (tmp_path / "code_ran").exists()
