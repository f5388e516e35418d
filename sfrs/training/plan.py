"""The experiment in numbers, printed before training and by ``sfrs-train --dry-run``."""
from __future__ import annotations

from typing import List

from sfrs.models import build_network
from sfrs.training.run import TrainingRun
from sfrs.training.terms import term_specs


def plan_lines(run: TrainingRun) -> List[str]:
    cfg, ts = run.config, run.training_set
    mining, optim = cfg.mining, cfg.optim
    queries = run.queries_per_epoch()
    steps = -(-queries // optim.tuples_per_step)
    chunks = -(-queries // mining.cache_refresh)
    dim = build_network(cfg.model, load_pretrained=False).head_dim
    cache_mb = (run.train_split.num_database + min(mining.cache_refresh, queries)) * dim * 4 / 2**20
    lines = [
        f"data: {cfg.data.dataset}",
        "  " + run.train_split.summary(),
        f"  {ts.num_queries:,} of {run.train_split.num_queries:,} training queries kept "
        f"({ts.dropped:,} without a positive within {cfg.data.train_positive_radius:g} m)",
        "  " + run.val_split.summary(),
        "  " + run.test_split.summary(),
        f"model: {cfg.model.backbone}{' ' + str(cfg.model.backbone_options) if cfg.model.backbone_options else ''} "
        f"(trains {cfg.model.trainable}) + {cfg.model.head} {cfg.model.head_options}, input "
        f"{cfg.model.input_size[0]}x{cfg.model.input_size[1]}, {dim:,}-d descriptors, weights {cfg.model.pretrained}",
        f"tuples: 1 query + 1 positive + {mining.negatives} negatives (pool {mining.negative_pool:,}"
        f"{', previous hardest kept across generations' if mining.keep_negatives_across_generations else ''}) "
        f"+ up to {mining.difficult_positives} difficult positives picked by the {mining.difficult_positives_by} "
        f"among {mining.positive_candidates} candidates"
        + (f" (k-reciprocal re-ranked from generation 1, {mining.rerank_distance} distances)" if mining.rerank else ""),
        f"epoch: {queries:,} tuples, {steps:,} steps of {optim.tuples_per_step} tuples, cache refresh every "
        f"{mining.cache_refresh:,} queries ({chunks} per epoch, {cache_mb:.1f} MB of descriptors each)",
        f"optimiser: {optim.optimizer} lr {optim.lr:g}"
        + (f", momentum {optim.momentum:g}" if optim.optimizer == "sgd" else "")
        + f", weight decay {optim.weight_decay:g}, lr x{optim.lr_gamma:g} every "
        f"{optim.lr_step_epochs} epochs of a generation",
        "schedule:",
    ]
    specs = term_specs(cfg.loss)
    total_steps = 0
    for g, gen in enumerate(cfg.train.generations):
        total_steps += gen.epochs * steps
        weights = {name: spec.weight * spec.cls.generation_weight(gen) for name, spec in specs.items()}
        terms = " + ".join(f"{w:g} x {name}" for name, w in weights.items() if w > 0)
        teacher = f", teacher tau {gen.teacher_temperature:g}" if weights.get("soft", 0) > 0 else ""
        student = gen.student_init + (f" (from {cfg.train.init_from})" if cfg.train.init_from else "")
        lines.append(f"  generation {g}: {gen.epochs} epoch(s), {gen.epochs * steps:,} steps, "
                     f"loss {terms}{teacher}, student {student}")
    lines.append(f"total: {total_steps:,} steps")
    return lines
