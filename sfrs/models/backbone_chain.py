"""Running a backbone's chain of blocks (:meth:`sfrs.models.backbones.Backbone.stages`):
in turn, measuring the largest activation, finding the leading frozen blocks, and
activation checkpointing that leaves batch-norm running statistics updated once."""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence, Tuple

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def run_chain(stages: Sequence[nn.Module], x: Tensor) -> Tensor:
    for stage in stages:
        x = stage(x)
    return x


def run_chain_measuring(stages: Sequence[nn.Module], x: Tensor) -> Tuple[Tensor, int]:
    """``run_chain`` and the size in bytes of the largest output of any of its layers."""
    largest = [x.numel() * x.element_size()]

    def record(_module, _inputs, output) -> None:
        if isinstance(output, Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    leaves = [m for stage in stages for m in stage.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        out = run_chain(stages, x)
    finally:
        for handle in handles:
            handle.remove()
    return out, largest[0]


def is_frozen(stage: nn.Module) -> bool:
    """Nothing to train, and each image's output depends on that image alone."""
    for module in stage.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or not module.track_running_stats):
            return False  # batch statistics: a chunk's would differ from the batch's
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
            return False  # masks drawn per chunk would not be the batch's
        if module.training and float(getattr(module, "drop_prob", 0.0) or 0.0) > 0:
            return False  # stochastic depth (timm's DropPath): the same
    return not any(p.requires_grad for p in stage.parameters())


def frozen_prefix(stages: Sequence[nn.Module]) -> int:
    """Number of leading frozen stages."""
    count = 0
    while count < len(stages) and is_frozen(stages[count]):
        count += 1
    return count


@contextlib.contextmanager
def running_stats_kept(stage: nn.Module) -> Iterator[None]:
    """Restore the batch-norm running statistics ``stage`` updates inside the block."""
    saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in stage.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    try:
        yield
    finally:
        for module, mean, var, tracked in saved:
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
            module.num_batches_tracked.copy_(tracked)


def checkpointed(stage: nn.Module, x: Tensor) -> Tensor:
    """``stage(x)`` keeping only ``x`` for the backward pass, which recomputes the rest."""
    calls = 0

    def run(inputs: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return stage(inputs)
        # the recomputation in the backward pass: batch norm normalises with the same batch
        # statistics, but must not move its running statistics a second time
        with running_stats_kept(stage):
            return stage(inputs)

    return checkpoint(run, x, use_reentrant=False)
