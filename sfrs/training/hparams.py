"""The run's configuration and final recalls in TensorBoard's HPARAMS tab, so that runs
compare side by side (``tensorboard --logdir runs`` over several run folders)."""
from __future__ import annotations

from typing import Any, Dict, Sequence, Union

Scalar = Union[bool, int, float, str]

#: prefix of the metric scalars the HPARAMS tab reads (one value each, at the last step).
METRIC_PREFIX = "hparams/"


def flatten_config(config: Dict[str, Any], prefix: str = "") -> Dict[str, Scalar]:
    """``to_dict(config)`` as dotted keys with scalar or string values: nested sections and
    lists of sections by key and index (``train.generations.1.soft_weight``), lists of
    values as one comma-joined string (``eval.recall_at: "1,5,10,20"``), None as ``"none"``
    (TensorBoard takes no None, and a missing column would hide the difference)."""
    flat: Dict[str, Scalar] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, name + "."))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, dict) for v in value):
            flat.update(flatten_config({str(i): v for i, v in enumerate(value)}, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        elif value is None:
            flat[name] = "none"
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def final_metrics(history: Dict[str, Any], recall_keys: Sequence[str], best_metric: str) -> Dict[str, float]:
    """Val and test R@N of the last generation's final model, and the best validation value
    (of ``train.best_metric``) over every epoch; tags under :data:`METRIC_PREFIX`."""
    metrics: Dict[str, float] = {}
    if history["generations"]:
        last = history["generations"][-1]
        for split in ("val", "test"):
            metrics.update({f"{METRIC_PREFIX}{split}_R@{n}": float(last[split][n])
                            for n in recall_keys if n in last[split]})
    best = history.get("best")
    if best:
        metrics[f"{METRIC_PREFIX}best_val_R@{best_metric}"] = float(best["val"][best_metric])
    return metrics


def write_hparams(writer, hparams: Dict[str, Scalar], metrics: Dict[str, float], step: int) -> None:
    """The hparams plugin's summaries and the metric scalars, in ``writer``'s own run (not
    in a sub-run, as ``SummaryWriter.add_hparams`` would do), at ``step``: a resumed run
    that goes on past it purges them and writes its own."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    for summary in hparams_summaries(hparams, metrics):
        writer.file_writer.add_summary(summary, step)
    for tag, value in metrics.items():
        writer.add_scalar(tag, value, step)
    writer.flush()
