"""Epochs, chunks and steps of one generation: descriptor-cache refreshes, optimiser
steps over tuples, resumable checkpoints, the non-finite-loss guard, per-epoch
validation, the best model, TensorBoard."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from sfrs import distributed
from sfrs.config import GenerationConfig
from sfrs.errors import SfrsError
from sfrs.retrieval import retrieval_grid
from sfrs.training.chunks import MinedChunk, mine_chunk
from sfrs.training.mining import HardNegativeMiner
from sfrs.training.objective import Objective, pass_shares, split_batch
from sfrs.training.optim import build_train_transform
from sfrs.training.run import TrainingRun
from sfrs.training.softlabels import SoftLabels
from sfrs.training.state import TrainingState, save_state
from sfrs.training.tuples import TupleBatch, TupleDataset
from sfrs.utils.hashing import fingerprint
from sfrs.utils.precision import autocast, check_precision, grad_scaler


#: TensorBoard image tag of the per-epoch retrieval examples on the validation split.
EXAMPLES_TAG = "retrieval/val"


class TrainingError(SfrsError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


class Interrupted(Exception):
    """Raised by the ``stop_after_steps`` test hook to emulate a killed process."""


class Trainer:
    """Trains one generation's objective from ``state.position`` to the generation's end.

    Args:
        run: the training run. generation, schedule: which generation.
        objective: the student and its active loss terms. optimizer, scheduler: over
            ``objective``'s parameters. miner: hard negatives (its memory persists).
        labels: the generation's teacher labels, or None.
        state: position and history, updated in place.
        on_step: called after every optimiser step (a test hook that stops the run).
    """

    def __init__(
        self,
        run: TrainingRun,
        generation: int,
        schedule: GenerationConfig,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        scheduler,
        miner: HardNegativeMiner,
        labels: Optional[SoftLabels],
        state: TrainingState,
        clock: float,
        on_step: Callable[[], None] = lambda: None,
    ) -> None:
        self.run, self.generation, self.schedule = run, generation, schedule
        self.objective, self.optimizer, self.scheduler = objective, optimizer, scheduler
        self.miner, self.labels, self.state, self.clock = miner, labels, state, clock
        self.on_step = on_step
        self.epoch_stats = StatsMean()
        model = run.config.model
        objective.network.set_training_memory(model.frozen_chunk, model.checkpoint_activations)
        self.trained = _data_parallel(objective, run.device)
        self.precision = check_precision(run.config.train.precision, "train.precision")
        self.scaler = grad_scaler(run.device, self.precision)
        if state.scaler:  # resumed inside the generation: the loss scale it had reached
            self.scaler.load_state_dict(state.scaler)

    @property
    def network(self):
        return self.objective.network

    def train(self, resumed_chunk: Optional[MinedChunk] = None) -> None:
        for epoch in range(self.state.position.epoch, self.schedule.epochs):
            self.run_epoch(epoch, resumed_chunk)
            resumed_chunk = None

    # ------------------------------------------------------------------ epoch
    def run_epoch(self, epoch: int, chunk: Optional[MinedChunk]) -> None:
        run, cfg, g, position = self.run, self.run.config, self.generation, self.state.position
        started = time.perf_counter()
        order = np.random.default_rng([cfg.seed, g, epoch]).permutation(run.training_set.num_queries)
        order = order[: run.queries_per_epoch()]
        chunks = [order[i : i + cfg.mining.cache_refresh] for i in range(0, len(order), cfg.mining.cache_refresh)]
        transform = build_train_transform(self.network, cfg.augment)
        totals: Dict[str, float] = {}
        self.epoch_stats = StatsMean()
        count, refresh_seconds = 0, 0.0
        for c in range(position.chunk, len(chunks)):
            if chunk is None:
                refresh_started = time.perf_counter()
                chunk = mine_chunk(run, self.network, self.miner, chunks[c], generation=g,
                                   rng_key=(cfg.seed, g, epoch, c), labels=self.labels,
                                   with_difficult=self.objective.needs_difficult_positives,
                                   with_negatives=self.objective.needs_hard_negatives)
                refresh_seconds += time.perf_counter() - refresh_started
                position.chunk, position.step = c, 0
                self.save(chunk)
            dataset = TupleDataset(
                run.train_split, chunk.tuples, chunk.num_negatives, transform,
                seed=int(fingerprint(seed=cfg.seed, g=g, e=epoch, c=c), 16) % (2**31),
                teacher=chunk.teacher, views=self.objective.views,
            )
            loader = DataLoader(
                Subset(dataset, rank_tuples(len(dataset), cfg.optim.tuples_per_step, position.step)),
                batch_size=cfg.optim.tuples_per_step // distributed.world_size(), shuffle=False,
                num_workers=cfg.data.num_workers, collate_fn=dataset.collate,
            )
            self.objective.train()
            bar = tqdm(loader, desc=f"gen {g} epoch {epoch} chunk {c + 1}/{len(chunks)}",
                       disable=not run.progress, leave=False)
            for batch in bar:
                values = self.step(batch, epoch)
                position.step += 1
                position.global_step += 1
                count += 1
                for name, value in values.items():
                    totals[name] = totals.get(name, 0.0) + value
                bar.set_postfix(loss=f"{values['total']:.3f}")
                every = cfg.train.checkpoint_every
                if every and position.global_step % every == 0:
                    self.save(chunk)
                self.on_step()
            chunk = None
            position.step = 0
        self.scheduler.step()
        self.end_epoch(epoch, {k: v / max(count, 1) for k, v in totals.items()}, count, started, refresh_seconds)

    def step(self, batch: TupleBatch, epoch: int) -> Dict[str, float]:
        """One optimiser step on this process's tuples of the step (on the CPU; each pass
        is moved to the device). Returns the step's loss values, averaged over processes."""
        self.optimizer.zero_grad(set_to_none=True)
        local = forward_backward(self.trained, self.objective, batch, self.run.config.optim.tuples_per_pass,
                                 self.run.device, precision=self.precision, scaler=self.scaler)
        # the mean over processes = the loss of the global batch; every process takes the
        # same decision on a non-finite value, so none is left waiting in a collective
        values = {name: distributed.all_reduce_sum(value) / distributed.world_size()
                  for name, value in local.values.items()}
        if not np.isfinite(values["total"]):
            text = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            raise TrainingError(
                f"non-finite loss at generation {self.generation}, epoch {epoch}, step {self.state.position.step} "
                f"({text}); the last good checkpoint is {self.run.paths.last}"
            )
        if self.run.config.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients (a no-op when not scaling)
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), self.run.config.optim.grad_clip)
        # fp16 on CUDA: skips a step whose scaled gradients overflowed, then adapts the scale
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.objective.after_step()
        writer, step = self.run.writer, self.state.position.global_step
        for name, value in values.items():
            writer.add_scalar(f"loss/{name}", value, step)
        writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], step)
        for name, value in local.stats.items():
            writer.add_scalar(f"stats/{name}", value, step)
        self.epoch_stats.add(local.stats)
        return values

    def end_epoch(self, epoch: int, losses: Dict[str, float], steps: int, started: float,
                  refresh_seconds: float) -> None:
        """Validate, record, keep the best model, write the epoch checkpoint. The record's
        ``seconds`` include ``refresh_seconds`` (descriptor cache and mining) and validation."""
        run, g, position, history = self.run, self.generation, self.state.position, self.state.history
        val_report, predictions = run.evaluate(self.network, run.val_split)
        record = {"generation": g, "epoch": epoch, "steps": steps, "val": run.recall(val_report),
                  "losses": losses, "seconds": time.perf_counter() - started, "refresh_seconds": refresh_seconds}
        stats = self.epoch_stats.means()
        if stats:
            record["stats"] = stats
        history.epochs.append(record)
        for n, value in val_report["recall"].items():
            run.writer.add_scalar(f"val/recall@{n}", value, position.global_step)
        for name, value in stats.items():
            # one point per epoch on the step axis: the per-step curves are noisy
            run.writer.add_scalar(f"epoch_stats/{name}", value, position.global_step)
        self.log_examples(predictions, len(history.epochs) - 1)
        run.log(f"generation {g} epoch {epoch}: {', '.join(f'{k} {v:.4f}' for k, v in losses.items())}; "
                f"val {format_recall(val_report)} ({record['seconds']:.0f}s)")
        position.epoch, position.chunk, position.step = epoch + 1, 0, 0
        epoch_path = run.paths.epoch_checkpoint(g, epoch)
        self.update_best(val_report, epoch, epoch_path)
        history.seconds = time.perf_counter() - self.clock
        self.save(None, extra_path=epoch_path)

    # ------------------------------------------------------------------ bookkeeping
    def save(self, chunk: Optional[MinedChunk], extra_path: Optional[Path] = None) -> None:
        """Only the main process writes; the others wait so that nobody runs ahead of a
        checkpoint it might have to resume from."""
        state = self.state
        state.model = self.network.checkpoint_payload()
        state.optimizer = self.optimizer.state_dict()
        state.scheduler = self.scheduler.state_dict()
        state.miner = self.miner.state_dict()
        state.terms = self.objective.terms.state_dict()
        state.scaler = self.scaler.state_dict() or None
        state.chunk = chunk.to_state() if chunk is not None else None
        if distributed.is_main():
            # the events up to this state on disk: a resumed run purges those after it only
            self.run.writer.flush()
            if extra_path is not None:
                save_state(extra_path, state)
            save_state(self.run.paths.last, state)
        distributed.barrier()

    def update_best(self, val_report, epoch: int, epoch_path: Path) -> None:
        run, metric = self.run, self.run.config.train.best_metric
        value = val_report["recall"][metric]
        best = self.state.history.best
        if best is None or value > best["val"][metric]:
            self.state.history.best = {"generation": self.generation, "epoch": epoch, "val": run.recall(val_report),
                                       "metric": f"val R@{metric}", "checkpoint": str(epoch_path)}
            if distributed.is_main():
                self.network.save(run.paths.best, extra={"selected_on": f"{run.config.train.val_split} R@{metric}",
                                                         "generation": self.generation, "epoch": epoch})

    def log_examples(self, predictions: Optional[np.ndarray], epochs_before: int) -> None:
        """Retrieval examples under one tag whose step is the number of epochs trained before
        this one (over all generations), so TensorBoard shows them on one step slider."""
        run = self.run
        count = run.config.train.tensorboard_examples
        if count <= 0 or predictions is None or not distributed.is_main():
            return
        split = run.val_split
        positives = split.positives(run.config.data.eval_positive_radius)
        rows = np.linspace(0, split.num_queries - 1, num=min(count, split.num_queries)).astype(int)
        grid = retrieval_grid(split, rows, predictions[rows, :5], positives, thumb=(72, 96))
        run.writer.add_image(EXAMPLES_TAG, grid, epochs_before, dataformats="HWC")


class StatsMean:
    """Running means of the terms' per-step diagnostics over an epoch; a step's NaN (no
    tuple the statistic applies to) does not count. Step counts, not tuples, weight them."""

    def __init__(self) -> None:
        self.sums: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}

    def add(self, stats: Dict[str, float]) -> None:
        for name, value in stats.items():
            if np.isfinite(value):
                self.sums[name] = self.sums.get(name, 0.0) + float(value)
                self.counts[name] = self.counts.get(name, 0) + 1

    def means(self) -> Dict[str, float]:
        return {name: self.sums[name] / self.counts[name] for name in self.sums}


@dataclass
class StepLosses:
    """One process's losses of a step: ``values`` (each term's value on the whole batch,
    then ``total``, their weighted sum) and ``stats`` (the terms' diagnostics)."""

    values: Dict[str, float]
    stats: Dict[str, float]


def forward_backward(
    trained: torch.nn.Module,
    objective: Objective,
    batch: TupleBatch,
    tuples_per_pass: int,
    device: torch.device,
    precision: str = "fp32",
    scaler: Optional["torch.amp.GradScaler"] = None,
) -> StepLosses:
    """Forward and backward ``batch`` in passes of ``tuples_per_pass`` tuples (0 = all at
    once), adding the gradients into ``.grad``; the caller zeroes them before.

    Each term's value in pass p is weighted by the pass's share of the items the term
    averages (:func:`~sfrs.training.objective.pass_shares`), so the accumulated gradients
    and the returned values are those of the whole batch in one pass, up to rounding.
    What does differ: batch norm in training mode in the trainable layers normalises
    each pass with its own statistics, and moves its running statistics once per pass.
    Under DistributedDataParallel (``trained``), gradients are synchronised once, in the
    backward of the last pass.

    Args:
        trained: ``objective`` or its DistributedDataParallel wrapper.
        batch: the step's tuples on this process, collated (on any device).
        precision: ``fp32``, ``bf16`` or ``fp16``: the forward passes (network and loss
            terms) run under autocast (:mod:`sfrs.utils.precision`), backward outside it.
        scaler: a GradScaler scaling each pass's loss before its backward (fp16 on CUDA);
            the returned values are unscaled.
    """
    passes = split_batch(batch, tuples_per_pass)
    shares = pass_shares(objective, passes)
    values = {name: 0.0 for name in objective.terms}
    values["total"] = 0.0
    stats: Dict[str, List[tuple]] = {}
    for p, (part, share) in enumerate(zip(passes, shares)):
        last = p == len(passes) - 1
        with contextlib.nullcontext() if last or not hasattr(trained, "no_sync") else trained.no_sync():
            with autocast(device, precision):
                out = trained(part.to(device))
                loss = out.total if len(passes) == 1 else objective.pass_total(out, share)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        for name, value in out.terms.items():
            values[name] += share[name] * float(value.detach())
        values["total"] += float(loss.detach())
        for key, value in out.stats.items():
            stats.setdefault(key, []).append((share.get(key.split("/", 1)[0], 1.0 / len(passes)), value))
    return StepLosses(values=values, stats={key: _weighted_mean(pairs) for key, pairs in stats.items()})


def _weighted_mean(pairs: List[tuple]) -> float:
    """A term's diagnostic over the passes, weighted like the term (a pass without any
    of the term's items, whose diagnostics are undefined, has weight 0)."""
    weight = sum(w for w, _ in pairs)
    if weight == 0:
        return pairs[-1][1]
    return sum(w * v for w, v in pairs if w > 0) / weight


def _data_parallel(module: torch.nn.Module, device: torch.device):
    """The module to train through: DistributedDataParallel under torchrun, else the module."""
    if not distributed.is_initialized():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def rank_tuples(count: int, tuples_per_step: int, first_step: int) -> List[int]:
    """Tuple indices this process trains on from ``first_step`` on: each global step's
    ``tuples_per_step`` tuples are split evenly over the processes, so the global batch
    is the same for any number of processes."""
    size, r = distributed.world_size(), distributed.rank()
    per_rank = tuples_per_step // size
    indices: List[int] = []
    for start in range(first_step * tuples_per_step, count, tuples_per_step):
        step = list(range(start, min(start + tuples_per_step, count)))
        if len(step) == tuples_per_step:
            indices += step[r * per_rank : (r + 1) * per_rank]
        elif len(step) >= size:  # a short last step, still shared by every process
            indices += step[r::size]
        # else: too short to give every process a tuple; skipping it keeps them in step
    return indices


def format_recall(report) -> str:
    return " ".join(f"R@{n} {v:.1f}" for n, v in list(report["recall"].items())[:3])
