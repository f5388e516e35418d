"""Training steps in reduced precision (``train.precision``): autocast forward, float32
gradients, finite losses close to the float32 step's."""
import pytest
import torch
from click.testing import CliRunner

from sfrs.config import GenerationConfig, LossConfig, ModelConfig
from sfrs.models import build_network
from sfrs.training import Objective, TermContext, build_terms
from sfrs.training.trainer import forward_backward
from sfrs.utils.precision import grad_scaler
from tests.training.test_step_memory import tuple_batch


def small_objective():
    torch.manual_seed(0)
    network = build_network(ModelConfig(input_size=(32, 48), head_options={"clusters": 4}))
    schedule = GenerationConfig(soft_weight=0.5, teacher_temperature=0.06)
    context = TermContext(generation=1, schedule=schedule, temperature=0.07, network=network)
    return Objective(network, build_terms(LossConfig(), context)).train()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_one_step__finite_loss_and_gradients_close_to_fp32(precision):
    generator = torch.Generator().manual_seed(1)
    batch = tuple_batch(lambda count: torch.randn(count, 3, 32, 48, generator=generator), dtype=torch.float32)
    cpu = torch.device("cpu")
    exact = small_objective()
    reference = forward_backward(exact, exact, batch, 0, cpu).values["total"]
    low = small_objective()
    scaler = grad_scaler(cpu, precision)
    assert not scaler.is_enabled()  # loss scaling is for fp16 on CUDA only
    total = forward_backward(low, low, batch, 0, cpu, precision=precision, scaler=scaler).values["total"]
    assert torch.isfinite(torch.tensor(total))
    assert total == pytest.approx(reference, rel=0.05)
    grads = [p.grad for p in low.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_sfrs_train__bad_precision_is_one_line_and_exit_2(tmp_path):
    from sfrs.cli.train import main

    result = CliRunner().invoke(main, ["--precision", "fp8", "--output", str(tmp_path / "run"), "--dry-run",
                                       "--no-progress"])
    assert result.exit_code == 2
    assert result.output.strip() == "sfrs-train: error: --precision must be one of fp32, bf16, fp16, got 'fp8'"
    result = CliRunner().invoke(main, ["--set", "eval.precision=fp9", "--output", str(tmp_path / "run"), "--dry-run",
                                       "--no-progress"])
    assert result.exit_code == 2
    assert result.output.strip() == "sfrs-train: error: eval.precision must be one of fp32, bf16, fp16, got 'fp9'"


@pytest.mark.slow
def test_tiny_run_in_bf16__finite_losses_and_recorded_precision(tmp_path):
    from sfrs.config import load_config
    from sfrs.training import train
    from tests.tiny import TINY_TRAINING

    config = load_config(overrides=TINY_TRAINING + ["train.precision=bf16", "eval.precision=bf16"],
                         generations=1, epochs=1)
    torch.manual_seed(0)
    results = train(config, tmp_path / "run", progress=False, log=lambda line: None)
    (epoch,) = results["epochs"]
    assert epoch["steps"] > 0 and epoch["losses"]["total"] > 0
    assert all(torch.isfinite(torch.tensor(value)) for value in epoch["losses"].values())
    assert (results["config"]["train"]["precision"], results["config"]["eval"]["precision"]) == ("bf16", "bf16")
    assert (tmp_path / "run" / "best.pt").exists()
