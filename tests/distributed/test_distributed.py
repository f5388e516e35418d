"""Two processes on CPU (gloo) through torchrun, as users launch multi-GPU jobs:
``torchrun --no-python --nproc_per_node 2 sfrs-train ...`` runs the console script itself."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny import TINY_TRAINING

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
pytestmark = pytest.mark.slow


def environment():
    """The console scripts of this interpreter's environment come first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def torchrun_command(args, nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] + args


def torchrun(args, nproc=2, **kwargs):
    return subprocess.run(torchrun_command(args, nproc), env=environment(), capture_output=True, text=True, cwd=REPO,
                          **kwargs)


def run(command, **kwargs):
    return subprocess.run(command, env=environment(), capture_output=True, text=True, cwd=REPO, **kwargs)


def test_gathered_descriptors__equal_single_process(tiny_city_root, tmp_path):
    two = torchrun([str(HERE / "extract_script.py"), str(tmp_path / "two.npy")])
    assert two.returncode == 0, two.stderr[-2000:]
    one = run([sys.executable, str(HERE / "extract_script.py"), str(tmp_path / "one.npy")])
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_dead_peer__others_exit_with_a_clear_line_quickly():
    started = time.time()
    result = torchrun([str(HERE / "die_script.py")], timeout=120)
    assert result.returncode != 0
    assert time.time() - started < 60
    assert "another process probably died" in result.stderr or "stopped by torchrun" in result.stderr


SETS = [arg for item in TINY_TRAINING for arg in ("--set", item)]


def train_command(output):
    return ["sfrs-train", "--generations", "2", "--epochs", "1", "--output", str(output),
            "--no-progress", "--device", "cpu"] + SETS


def test_two_processes__same_losses_and_weights_as_one(tiny_city_root, tmp_path):
    one = run(train_command(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(["--no-python"] + train_command(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    for ea, eb in zip(a["epochs"], b["epochs"]):
        assert ea["steps"] == eb["steps"]
        for name in ea["losses"]:
            assert ea["losses"][name] == pytest.approx(eb["losses"][name], rel=1e-3, abs=1e-4)
    wa = torch.load(tmp_path / "one" / "final.pt", weights_only=False)["state_dict"]
    wb = torch.load(tmp_path / "two" / "final.pt", weights_only=False)["state_dict"]
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-3, rtol=1e-3)
    # only the main process writes: one TensorBoard event file, one results file, each line once
    assert len(list((tmp_path / "two" / "tb").glob("events.out.tfevents.*"))) == 1
    log_one, log_two = ((tmp_path / name / "train.log").read_text().splitlines() for name in ("one", "two"))
    assert len(log_two) == len(log_one)


def test_two_processes__killed_then_resumed_completes(tiny_city_root, tmp_path):
    output = tmp_path / "run"
    command = torchrun_command(["--no-python"] + train_command(output))
    process = subprocess.Popen(command, env=environment(), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    last = output / "checkpoints" / "last.pt"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if last.exists():
            try:
                if torch.load(last, weights_only=False)["position"]["global_step"] >= 5:
                    break
            except Exception:
                pass
        time.sleep(0.1)
    assert process.poll() is None, "finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers
    process.wait()
    # what the killed run printed is kept
    assert any(line.endswith("generation 0: 1 epoch(s); objective 1 x hard: sare_ind (tau 0.07)")
               for line in (output / "train.log").read_text().splitlines())
    resumed = torchrun(["--no-python"] + train_command(output) + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["complete"] and [g["generation"] for g in results["generations"]] == [0, 1]
    assert sum(" resuming " in line for line in (output / "train.log").read_text().splitlines()) == 1


def test_eval_under_torchrun__same_recalls_as_one_process(tiny_city_root, tmp_path):
    from sfrs.config import Config, build_config
    from sfrs.models import build_network
    from tests.tiny import TINY_MODEL

    torch.manual_seed(0)
    build_network(build_config(Config, overrides=TINY_MODEL).model).save(tmp_path / "model.pt")
    command = ["sfrs-eval", "--checkpoint", str(tmp_path / "model.pt"), "--dataset", "synthetic:tiny",
               "--no-progress", "--device", "cpu", "--batch-size", "7"]
    one = run(command + ["--json", str(tmp_path / "one.json")])
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(["--no-python"] + command + ["--json", str(tmp_path / "two.json")])
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    assert a["recall"] == b["recall"] and a["num_queries"] == b["num_queries"]
    assert two.stdout.count("report written to") == 1  # one process reports
