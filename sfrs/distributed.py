"""torch.distributed plumbing: one process per device under ``torchrun``, or a single process.

Everything here degrades to a no-op without ``torchrun`` (``WORLD_SIZE`` unset), so the
library has one code path. The backend is NCCL when each process owns a GPU, gloo on
CPU. Collectives carry a timeout: a peer that dies makes the others fail with a clear
message instead of hanging (torchrun also stops the remaining workers).
"""
from __future__ import annotations

import datetime
import os
import signal
import sys
from typing import Any, List

import numpy as np
import torch
import torch.distributed as dist

from sfrs.errors import SfrsError


class DistributedError(SfrsError):
    """A peer process failed or the process group could not be formed."""


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def setup(device: str = "auto", timeout_s: float = 600.0) -> torch.device:
    """Join the process group when launched by torchrun; return this process's device.

    ``device="auto"`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        chosen = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        chosen = torch.device(device)
        if chosen.type == "cuda" and chosen.index is None and launched_by_torchrun():
            chosen = torch.device(f"cuda:{local_rank}")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if launched_by_torchrun() and not is_initialized():
        _report_termination()
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as exc:  # rendezvous failures come in many types
            raise DistributedError(f"cannot join the process group ({backend}): {exc}") from None
    return chosen


def _report_termination() -> None:
    """torchrun stops every worker with SIGTERM when one of them fails: say so in one line
    instead of vanishing (checkpoints are written atomically, so nothing is half-written)."""

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        rank_ = os.environ.get("RANK", "?")
        sys.stderr.write(
            f"sfrs: process {rank_} stopped by torchrun (SIGTERM): another process failed or the job "
            "was cancelled; rerun with --resume to continue from the last checkpoint\n"
        )
        sys.stderr.flush()
        os._exit(143)

    signal.signal(signal.SIGTERM, handler)


def teardown() -> None:
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        _guard(dist.barrier, "barrier")


def shard(count: int) -> range:
    """This rank's contiguous slice of ``count`` items (ranks differ by at most one item)."""
    return shard_of(count, rank())


def all_gather_rows(local: np.ndarray, total: int) -> np.ndarray:
    """Concatenate every rank's rows (rank order, as :func:`shard` splits) on every rank."""
    if not is_initialized():
        return local
    sizes = [len(shard_of(total, r)) for r in range(world_size())]
    width = local.shape[1:]
    longest = max(sizes)
    padded = np.zeros((longest, *width), dtype=local.dtype)
    padded[: len(local)] = local
    tensor = torch.from_numpy(padded)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    gathered = [torch.empty_like(tensor) for _ in sizes]
    _guard(lambda: dist.all_gather(gathered, tensor), "all_gather")
    return np.concatenate([g.cpu().numpy()[:n] for g, n in zip(gathered, sizes)])


def shard_of(count: int, which: int) -> range:
    """Rank ``which``'s slice of ``count`` items."""
    size = world_size()
    base, extra = divmod(count, size)
    start = which * base + min(which, extra)
    return range(start, start + base + (1 if which < extra else 0))


def broadcast_object(obj: Any, source: int = 0) -> Any:
    """``obj`` of rank ``source`` on every rank (pickled; for small control data)."""
    if not is_initialized():
        return obj
    box: List[Any] = [obj if rank() == source else None]
    _guard(lambda: dist.broadcast_object_list(box, src=source), "broadcast")
    return box[0]


def all_reduce_sum(value: float) -> float:
    return _all_reduce(value, "SUM")


def all_reduce_max(value: float) -> float:
    return _all_reduce(value, "MAX")


def _all_reduce(value: float, op: str) -> float:
    if not is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    _guard(lambda: dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op)), "all_reduce")
    return float(tensor.item())


def _guard(fn, what: str) -> Any:
    try:
        return fn()
    except (RuntimeError, dist.DistBackendError if hasattr(dist, "DistBackendError") else RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DistributedError(
            f"rank {rank()}: {what} failed, another process probably died ({first})"
        ) from None
