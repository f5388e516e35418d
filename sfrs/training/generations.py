"""SFRS training in generations (Ge et al., ECCV 2020), as the paper tells it.

For each generation g of ``config.train.generations``:

1. the student: fresh weights + NetVLAD k-means (the reference), or the teacher's
   weights (``student_init: continue``); on resume, the weights of ``last.pt``;
2. the objective: the active loss terms (``hard``, from g = 1 the ``soft`` region term,
   any other registered term) around the student;
3. the teacher's labels: from g = 1, when a term uses them, the final model of
   generation g-1 labels image-to-region similarities once, cached in
   ``softlabels/gen{g}.h5``;
4. the epochs: chunks of queries, each starting with a refresh of the student's
   descriptor cache and the mining of its tuples (:mod:`sfrs.training.trainer`);
5. the end of the generation: ``gen{g}_final.pt`` (the next teacher), validation and
   test recall, results written.

A run killed at any moment resumes from ``checkpoints/last.pt`` without losing finished
work (:mod:`sfrs.training.state`).
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Union

import torch

from sfrs import distributed
from sfrs.config import Config, GenerationConfig, save_yaml, to_dict, validate_config
from sfrs.errors import ConfigError, SfrsError
from sfrs.models import load_network
from sfrs.training.chunks import MinedChunk
from sfrs.training.hparams import final_metrics, flatten_config, write_hparams
from sfrs.training.initialise import student_for
from sfrs.training.mining import HardNegativeMiner
from sfrs.training.objective import Objective
from sfrs.training.optim import build_optimizer, build_scheduler
from sfrs.training.plan import plan_lines
from sfrs.training.report import write_results
from sfrs.training.run import TrainingRun
from sfrs.training.shipped import measure_best_model
from sfrs.training.state import History, Position, TrainingState, check_same_run, load_state, save_state
from sfrs.training.teacher import teacher_labels
from sfrs.training.terms import TermContext, build_terms, term_specs
from sfrs.training.trainer import Trainer, format_recall
from sfrs.utils.seeding import seed_everything


def train(
    config: Config,
    output: Union[str, Path],
    *,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_step: Callable[[], None] = lambda: None,
    trust_checkpoint: bool = False,
) -> Dict[str, Any]:
    """Train ``config``'s schedule into the run folder ``output`` (resuming what is there),
    as ``sfrs-train`` does; returns the results (``results.json``'s content).
    ``trust_checkpoint`` reads model and state files holding pickled objects (older
    formats, ``train.init_from``), which can run code."""
    run = prepare_run(config, output, device=torch.device(device), progress=progress, log=log,
                      trust_checkpoint=trust_checkpoint)
    try:
        return run_schedule(run, on_step)
    except SfrsError as exc:
        run.log.record(f"stopped: {exc}")
        raise
    finally:  # also on a failure: what was logged reaches TensorBoard's files and train.log
        run.close()


def run_schedule(run: TrainingRun, on_step: Callable[[], None]) -> Dict[str, Any]:
    """Every generation of the schedule not done yet; the results at the end."""
    config = run.config
    state = load_state(run.paths.last, run.trust_checkpoint)
    if state is not None:
        check_same_run(state.config, to_dict(config), run.paths.root)
        p = state.position
        run.tensorboard_purge_step = p.global_step
        run.log(f"resuming {run.paths.root} at generation {p.generation}, epoch {p.epoch}, chunk {p.chunk}, "
                f"step {p.step} (global step {p.global_step})")
    else:  # a resumed run has its generators restored from the checkpoint instead
        seed_everything(config.seed)
        state = TrainingState(config=to_dict(config), position=Position(), history=History())
        if run.log.continued:
            run.log(f"starting {run.paths.root} again from the beginning (no checkpoint to resume from)")
    for line in plan_lines(run):
        run.log(line)
    clock = time.perf_counter() - state.history.seconds
    # a run already complete when called has its hparams in TensorBoard already
    finishes_now = state.position.generation < len(config.train.generations)
    for g in range(state.position.generation, len(config.train.generations)):
        run_generation(run, g, config.train.generations[g], state, clock, on_step)
    if state.history.best is not None and "test" not in state.history.best:
        measure_best_model(run, state.history.best)  # every process: extraction is sharded
    if not distributed.is_main():
        return to_dict(state.history)
    results = write_results(run, state.history, final=True)
    if finishes_now:
        write_hparams(run.writer, flatten_config(to_dict(config)),
                      final_metrics(results, run.recall_keys, config.train.best_metric), state.position.global_step)
    return results


def prepare_run(config: Config, output: Union[str, Path], *, create: bool = True, **run_options: Any) -> TrainingRun:
    """Import plugins, check the config and its loss terms, open the data, and (``create``)
    make the run folder with its ``config.yaml``."""
    for module in config.plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"plugins: cannot import '{module}' ({exc})") from None
    validate_config(config)
    term_specs(config.loss)
    if config.optim.tuples_per_step % distributed.world_size():
        raise ConfigError(f"optim.tuples_per_step={config.optim.tuples_per_step} must be a multiple of the "
                          f"number of processes ({distributed.world_size()})")
    run = TrainingRun(config, Path(output), **run_options)
    if create and distributed.is_main():
        run.paths.make()
        if not run.paths.config.exists():
            save_yaml(config, run.paths.config)
        run.start_log()
    distributed.barrier()
    return run


def run_generation(run: TrainingRun, g: int, schedule: GenerationConfig, state: TrainingState,
                   clock: float, on_step: Callable[[], None]) -> None:
    config, position = run.config, state.position
    resuming = position.started
    started = time.perf_counter()
    # 1. the student
    if resuming:
        network = load_network(run.paths.last, run.device, run.trust_checkpoint)
    else:
        network = student_for(run, g, schedule)
    # 2. the objective: the loss terms active in this generation
    context = TermContext(generation=g, schedule=schedule, temperature=config.loss.temperature, network=network)
    objective = Objective(network, build_terms(config.loss, context)).to(run.device)
    # 3. the teacher's labels
    labels = teacher_labels(run, g, schedule) if objective.needs_difficult_positives else None
    optimizer = build_optimizer(objective, config.optim)
    scheduler = build_scheduler(optimizer, config.optim)
    miner = HardNegativeMiner(run.training_set, config.mining.negatives, config.mining.negative_pool)
    if state.miner is not None and (resuming or config.mining.keep_negatives_across_generations):
        miner.load_state_dict(state.miner)
    chunk = None
    if resuming:
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        objective.terms.load_state_dict(state.terms)
        chunk = MinedChunk.from_state(state.chunk) if state.chunk is not None else None
    else:
        position.epoch, position.chunk, position.step, position.started = 0, 0, 0, True
    run.log(f"generation {g}: {schedule.epochs} epoch(s); objective {objective.describe()}")
    # 4. the epochs
    trainer = Trainer(run, g, schedule, objective, optimizer, scheduler, miner, labels, state, clock, on_step)
    trainer.train(chunk)
    # 5. the end of the generation
    finish_generation(run, g, schedule, trainer, time.perf_counter() - started)


def generation_stats(epochs: List[Dict[str, Any]]) -> Dict[str, float]:
    """The terms' diagnostics over a generation (e.g. ``soft/teacher_entropy``): the mean of
    its epochs' means, weighted by their steps."""
    sums: Dict[str, float] = {}
    weights: Dict[str, float] = {}
    for epoch in epochs:
        for name, value in epoch.get("stats", {}).items():
            sums[name] = sums.get(name, 0.0) + value * epoch["steps"]
            weights[name] = weights.get(name, 0.0) + epoch["steps"]
    return {name: sums[name] / weights[name] for name in sums if weights[name] > 0}


def finish_generation(run: TrainingRun, g: int, schedule: GenerationConfig, trainer: Trainer, seconds: float) -> None:
    """Save the generation's final model (the next teacher), record val/test recall."""
    network, state = trainer.network, trainer.state
    val_report, _ = run.evaluate(network, run.val_split)
    test_report, _ = run.evaluate(network, run.test_split)
    final_path = run.paths.generation_final(g)
    if distributed.is_main():
        network.save(final_path, extra={"generation": g})
        network.save(run.paths.final, extra={"generation": g})
    epochs = [e for e in state.history.epochs if e["generation"] == g]
    metric = run.config.train.best_metric
    best_epoch = max(epochs, key=lambda e: e["val"][metric]) if epochs else None
    state.history.generations.append({
        "generation": g, "epochs": schedule.epochs, "soft_weight": schedule.soft_weight,
        "teacher_temperature": schedule.teacher_temperature if schedule.soft_weight > 0 else None,
        "student_init": schedule.student_init, "terms": trainer.objective.weights,
        "val": run.recall(val_report), "test": run.recall(test_report),
        "seconds": sum(e["seconds"] for e in epochs) if epochs else seconds,
        "stats": generation_stats(epochs),
        "final_checkpoint": str(final_path),
        "best_checkpoint": str(run.paths.epoch_checkpoint(g, best_epoch["epoch"])) if best_epoch else None,
    })
    state.history.seconds = time.perf_counter() - trainer.clock
    for split_name, report in (("val", val_report), ("test", test_report)):
        for n, value in report["recall"].items():
            run.writer.add_scalar(f"generation/{split_name}_recall@{n}", value, g)
    for name, value in state.history.generations[-1]["stats"].items():
        run.writer.add_scalar(f"generation/{name}", value, g)
    run.log(f"generation {g} done: val {format_recall(val_report)}; test {format_recall(test_report)}")
    if distributed.is_main():
        write_results(run, state.history, final=False)
    # the next generation starts from here: only the miner's memory carries over
    state.position = Position(generation=g + 1, global_step=state.history.steps_done())
    state.model, state.optimizer, state.scheduler, state.terms, state.chunk = network.checkpoint_payload(), None, None, None, None
    state.scaler = None
    if distributed.is_main():
        save_state(run.paths.last, state)
    distributed.barrier()
