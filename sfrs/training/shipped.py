"""The model a user ships, measured: ``best.pt`` (chosen on validation) on the test split,
and with ``eval.pca_dim`` also PCA-whitened, as papers report their numbers.

Runs once at the end of training; the test split never influences which model is best.
A run killed during it measures again when resumed.
"""
from __future__ import annotations

from typing import Any, Dict

from sfrs import distributed
from sfrs.models import load_network
from sfrs.retrieval import attach_pca
from sfrs.training.run import TrainingRun


def measure_best_model(run: TrainingRun, best: Dict[str, Any]) -> None:
    """Add ``test`` (Recall@N of ``best.pt``) and, with ``eval.pca_dim``, ``test_pca``
    (``{"dim", "recall", "model"}``: the whitening fitted on the training split, the model
    with it saved as ``best_pca<dim>.pt``) to the history's ``best`` record."""
    config = run.config
    model = load_network(run.paths.best, run.device, run.trust_checkpoint)
    report, _ = run.evaluate(model, run.test_split)
    best["test"] = run.recall(report)
    if distributed.is_main():
        run.log(f"best.pt ({best['metric']}: generation {best['generation']}, epoch {best['epoch']}) on "
                f"{config.train.test_split}: " + ", ".join(f"R@{n} {v:.1f}" for n, v in best["test"].items()))
    dim = config.eval.pca_dim
    if not dim:
        return
    whitened = run.paths.root / f"best_pca{dim}.pt"
    message = attach_pca(
        model, dim, lambda: run.train_split, save_model_to=whitened, samples=config.eval.pca_samples,
        seed=config.seed, device=run.device, batch_size=config.data.batch_size,
        num_workers=config.data.num_workers, progress=run.progress,
    )
    report, _ = run.evaluate(model, run.test_split)
    best["test_pca"] = {"dim": dim, "recall": run.recall(report), "model": str(whitened)}
    if distributed.is_main():
        run.log(f"{message}; on {config.train.test_split}: "
                + ", ".join(f"R@{n} {v:.1f}" for n, v in best["test_pca"]["recall"].items()))
