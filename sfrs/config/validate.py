"""Checks that types alone cannot express, and the ``--generations`` / ``--epochs``
shortcuts. A loss term's own options are checked where terms are built
(``sfrs.training.terms.build_terms``), which knows the registered terms."""
from __future__ import annotations

import dataclasses
from typing import Optional

from sfrs.config.schema import Config
from sfrs.errors import ConfigError

STUDENT_INITS = ("reinit", "continue")
DIFFICULT_POSITIVE_PICKERS = ("student", "teacher")
RERANK_DISTANCES = ("reference", "squared")


def with_schedule(config: Config, generations: Optional[int] = None, epochs: Optional[int] = None) -> Config:
    """``--generations N`` cuts the schedule or repeats its last entry; ``--epochs E``
    sets the epochs of every generation."""
    schedule = list(config.train.generations)
    if generations is not None:
        if generations < 1:
            raise ConfigError("--generations must be at least 1")
        schedule = schedule[:generations] + [schedule[-1]] * max(0, generations - len(schedule))
    if epochs is not None:
        if epochs < 1:
            raise ConfigError("--epochs must be at least 1")
        schedule = [dataclasses.replace(g, epochs=epochs) for g in schedule]
    return dataclasses.replace(config, train=dataclasses.replace(config.train, generations=schedule))


def validate_config(config: Config) -> None:
    """One clear error per problem, naming the key."""

    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(len(config.train.generations) >= 1, "train.generations must list at least one generation")
    for g, gen in enumerate(config.train.generations):
        require(gen.epochs >= 1, f"train.generations.{g}.epochs must be at least 1")
        require(gen.soft_weight >= 0, f"train.generations.{g}.soft_weight must be >= 0")
        require(gen.teacher_temperature > 0, f"train.generations.{g}.teacher_temperature must be > 0")
        require(gen.student_init in STUDENT_INITS,
                f"train.generations.{g}.student_init must be 'reinit' or 'continue', got '{gen.student_init}'")
    require(config.train.generations[0].soft_weight == 0,
            "train.generations.0.soft_weight must be 0: generation 0 has no teacher")
    require(config.loss.temperature > 0, "loss.temperature must be > 0")
    for name, options in config.loss.terms.items():
        weight = options.get("weight", 1.0)
        require(isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0,
                f"loss.terms.{name}.weight must be a number >= 0, got {weight!r}")
    m = config.mining
    require(m.negatives >= 1, "mining.negatives must be at least 1")
    require(m.negative_pool >= m.negatives, "mining.negative_pool must be >= mining.negatives")
    require(m.positive_candidates >= m.difficult_positives >= 1,
            "mining.positive_candidates must be >= mining.difficult_positives >= 1")
    require(m.difficult_positives_by in DIFFICULT_POSITIVE_PICKERS,
            f"mining.difficult_positives_by must be 'student' or 'teacher', got '{m.difficult_positives_by}'")
    require(m.teacher_candidates == 0 or m.teacher_candidates >= m.positive_candidates,
            "mining.teacher_candidates must be 0 (every positive) or >= mining.positive_candidates")
    require(m.rerank_distance in RERANK_DISTANCES,
            f"mining.rerank_distance must be 'reference' or 'squared', got '{m.rerank_distance}'")
    require(m.cache_refresh >= 1, "mining.cache_refresh must be at least 1")
    require(config.optim.tuples_per_step >= 1, "optim.tuples_per_step must be at least 1")
    require(0 <= config.optim.tuples_per_pass <= config.optim.tuples_per_step,
            "optim.tuples_per_pass must be between 0 (a step at once) and optim.tuples_per_step")
    require(config.model.frozen_chunk >= 0, "model.frozen_chunk must be >= 0 (0 = sized from the input)")
    require(config.optim.lr > 0, "optim.lr must be > 0")
    require(config.data.train_positive_radius <= config.data.eval_positive_radius,
            "data.train_positive_radius must not exceed data.eval_positive_radius")
    require(len(config.eval.recall_at) >= 1 and min(config.eval.recall_at) >= 1,
            "eval.recall_at must list positive integers")
    allowed = [str(n) for n in config.eval.recall_at]
    require(config.train.best_metric in allowed,
            f"train.best_metric must be one of eval.recall_at ({', '.join(allowed)}), the N of val R@N; "
            f"got '{config.train.best_metric}'")
