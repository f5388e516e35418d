"""Failure galleries of a run report: a run's ``best.pt`` evaluated on its test split as
training measured it (``data.eval_positive_radius``, ``eval.recall_at``, ``eval.index``),
drawn by :func:`sfrs.retrieval.save_retrieval_examples` (the galleries of ``sfrs-eval
--visualize``): ``<prefix>_examples.png``, ``<prefix>_failures.png``, ``<prefix>_map.png``.

This extracts the test split's descriptors once per run, so reports ask for it explicitly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple, Union

import torch

from sfrs.config import Config, build_config
from sfrs.data import open_dataset
from sfrs.errors import CheckpointError, ConfigError, DataError
from sfrs.models import load_network
from sfrs.reports.run_sources import CONFIG_FILE, RunFolder
from sfrs.retrieval import evaluate, save_retrieval_examples

BEST_MODEL = "best.pt"


def run_galleries(
    run: RunFolder,
    prefix: Union[str, Path],
    count: int,
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
    trust_checkpoint: bool = False,
) -> Tuple[Dict[str, float], Tuple[Path, Path, Path]]:
    """Evaluate ``run``'s best.pt on its test split; write the galleries of ``count`` queries.

    Returns:
        (Recall@N of this evaluation, the three PNG paths).
    Raises:
        CheckpointError: no best.pt. ConfigError / DataError: the run's configuration or
            its test split cannot be read.
    """
    best = run.path / BEST_MODEL
    if not best.is_file():
        raise CheckpointError(f"{best}: not found (the run has not validated a model yet)")
    config_path = run.path / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: not found; the test split of the run is unknown")
    config = build_config(Config, config_path)
    split = open_dataset(config.data.dataset, config.train.test_split, config.data.images_root)
    model = load_network(best, device, trust_checkpoint)
    evaluation = evaluate(
        model, split, device=device, batch_size=batch_size, num_workers=num_workers, ns=config.eval.recall_at,
        threshold=config.data.eval_positive_radius, index=config.eval.index, progress=progress,
    )
    if evaluation is None:  # another torchrun process: the main one draws
        raise DataError("galleries are drawn by the main process only; run sfrs-report without torchrun")
    paths = save_retrieval_examples(prefix, split, evaluation.predictions, evaluation.positives, count,
                                    distances=evaluation.distances)
    return dict(evaluation.report["recall"]), paths
