"""``adapt(config, checkpoint, output)``: what ``sfrs-adapt`` does, reading like the method.

1. open the target (two unlabelled views + the labelled splits to judge by);
2. extract the frozen network's features once (resumable HDF5 cache);
3. evaluate the frozen features (before);
4. train the adapter on the cache: per step an E-step (pseudo-labels) and an M-step;
5. evaluate the adapted features (after), save ``adapted.pt`` = frozen network + adapter,
   ``results.json`` / ``results.md``.

Output folder::

    adapted.pt            the frozen model with its adapter (load_network, sfrs-eval)
    results.json / .md    before / after per evaluation, pseudo-labels per step
    config.yaml           the configuration
    checkpoints/last.pt   resumable state (adapter, optimiser, step, history)
    features/*.h5         the frozen features
    tb/                   TensorBoard
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch

from sfrs.adaptation.config import RESUMABLE_KEYS, AdaptConfig
from sfrs.adaptation.features import FeatureCache
from sfrs.adaptation.loop import AdaptationLoop, batch_rows, encode_rows, gallery_rows
from sfrs.adaptation.metrics import evaluate_task
from sfrs.adaptation.pseudo_labels import whole_set_pseudo_labels
from sfrs.adaptation.results import write_results
from sfrs.adaptation.target import Target, open_target
from sfrs.config import save_yaml, to_dict
from sfrs.models import Adapter, GeoNet, load_network
from sfrs.utils.hashing import fingerprint

PathLike = Union[str, Path]


def encode(adapter: Optional[Adapter], features: np.ndarray, device: Union[str, torch.device]) -> np.ndarray:
    """(N, D) frozen features -> (N, H) adapted descriptors (eval mode); the features
    themselves without adapter."""
    if adapter is None:
        return features
    return encode_rows(adapter, torch.from_numpy(features).to(device)).float().cpu().numpy()


def _evaluate(target: Target, cache: FeatureCache, adapter: Optional[Adapter], config: AdaptConfig, device) -> List[Dict[str, Any]]:
    reports = []
    for task in target.evaluations:
        database = cache.load(f"{task.name} database", task.split.database_paths)
        queries = cache.load(f"{task.name} queries", task.split.query_paths, task.query_resize)
        reports.append(evaluate_task(
            task, encode(adapter, database, device), encode(adapter, queries, device),
            ns=config.recall_at, index=config.index,
        ))
    return reports


@torch.no_grad()
def _labels_of(adapter: Optional[Adapter], features_a: np.ndarray, features_b: np.ndarray, config: AdaptConfig,
               target: Target, device) -> Dict[str, Any]:
    """Pseudo-labels from the frozen (``adapter`` None) or adapted features, where the
    E-step looks for them: the whole set, or (scope ``batch``) the step-0 batch."""
    if config.pseudo_labels.scope == "whole_set":
        rows_a, rows_b = np.arange(len(features_a)), np.arange(len(features_b))
    else:
        rows_a = batch_rows(len(features_a), config.optim.batch_size, 0, config.seed)
        rows_b = gallery_rows(len(features_b), config.optim.gallery_size, 0, config.seed)
    a, b = encode(adapter, features_a[rows_a], device), encode(adapter, features_b[rows_b], device)
    a, b = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) for x in (a, b))
    labels = whole_set_pseudo_labels(a, b, config.pseudo_labels.threshold, config.pseudo_labels.min_mutual)
    return {
        "scope": config.pseudo_labels.scope,
        "mutual": labels.mutual,
        "count": labels.count,
        "precision": labels.precision(rows_a, rows_b, target.train_positive_test()),
    }


def _scope_words(config) -> str:
    scope = config["pseudo_labels"]["scope"] if isinstance(config, dict) else config.pseudo_labels.scope
    return "whole set" if scope == "whole_set" else "first batch"


def _labels_line(labels: Dict[str, Any]) -> str:
    precision = "" if labels["precision"] is None else f" ({100 * labels['precision']:.1f}% correct)"
    return f"{labels['count']:,}{precision}"


def _run_fingerprint(config: AdaptConfig, model_hash: str, train_sets: Dict[str, str]) -> str:
    """What determines the adapter's weights: a resumed run must match it."""
    settings = to_dict(config)
    for key in RESUMABLE_KEYS:
        section, _, name = key.rpartition(".")
        (settings[section] if section else settings).pop(name)
    return fingerprint(config=settings, model=model_hash, features=train_sets)


def _tensorboard(folder: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder))


def adapt(
    config: AdaptConfig,
    checkpoint: PathLike,
    output: PathLike,
    *,
    device: Union[str, torch.device] = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_step: Optional[Callable[[Dict[str, Any]], None]] = None,
    trust_checkpoint: bool = False,
) -> Dict[str, Any]:
    """Adapt the network of ``checkpoint`` to ``config.data.dataset`` without labels.

    A rerun with the same ``output`` resumes (features, then training, from the last
    checkpoint) and ends with the weights of an uninterrupted run. ``trust_checkpoint``
    reads a checkpoint or state holding pickled objects, which can run code.

    Returns:
        The content of ``results.json``.
    Raises:
        DataError: unreadable data set or images. CheckpointError: unreadable checkpoint,
        or ``output`` holds another adaptation. ConfigError: impossible settings.
    """
    started = time.perf_counter()
    output = Path(output)
    device = torch.device(device)
    target = open_target(config.data)
    model: GeoNet = load_network(checkpoint, device, trust_checkpoint)
    if model.adapter is not None:
        log(f"{checkpoint} carries an adapter already: adapting the network without it (the new one replaces it)")
        model.set_adapter(None)
    model.eval()
    log(f"model: {checkpoint} ({model.config.backbone} + {model.config.head}, {model.out_dim}-d frozen descriptors)")
    for line in target.summary():
        log(line)

    data = config.data
    cache = FeatureCache(model, output / "features", device=device, batch_size=data.batch_size,
                         num_workers=data.num_workers, half=data.half, progress=progress)
    name_a, name_b = (f"{data.split} {view}" for view in target.view_names)
    features_a = cache.load(name_a, target.train.query_paths, target.query_resize)
    features_b = cache.load(name_b, target.train.database_paths)
    extracted = time.perf_counter()
    before = _evaluate(target, cache, None, config, device)
    frozen_labels = _labels_of(None, features_a, features_b, config, target, device)

    torch.manual_seed(config.seed)
    adapter = Adapter(model.out_dim, config.adapter.hidden_dim, config.adapter.scale_init).to(device)
    initial_temperature = 1.0 / adapter.scale.item()
    writer = _tensorboard(output / "tb")
    try:
        loop = AdaptationLoop(
            adapter, torch.from_numpy(features_a).to(device), torch.from_numpy(features_b).to(device), config,
            state_path=output / "checkpoints" / "last.pt",
            fingerprint=_run_fingerprint(config, cache.model_hash, {n: cache.fingerprints[n] for n in (name_a, name_b)}),
            is_positive=target.train_positive_test(), writer=writer,
        )
        if loop.resume(trust_checkpoint):
            log(f"resuming at step {loop.step} of {config.optim.steps} from {loop.state_path}")
        save_yaml(config, output / "config.yaml")
        optim = config.optim
        per_step_a = batch_rows(len(features_a), optim.batch_size, 0, config.seed).size
        per_step_b = gallery_rows(len(features_b), optim.gallery_size, 0, config.seed).size
        log(
            f"adapter {adapter.in_dim} -> {adapter.hidden_dim} ({sum(p.numel() for p in adapter.parameters()):,} "
            f"parameters); {optim.steps} steps of {per_step_a:,} {target.view_names[0]} x {per_step_b:,} "
            f"{target.view_names[1]} rows; AdamW lr {optim.lr:g}, {optim.warmup_steps} warm-up step(s), cosine; "
            f"BatchNorm {config.adapter.batch_norm}; frozen pseudo-labels ({_scope_words(config)}): {_labels_line(frozen_labels)}"
        )
        history = loop.run(progress=progress, on_step=on_step)
        trained = time.perf_counter()
        adapter.eval()
        after = _evaluate(target, cache, adapter, config, device)
        adapted_labels = _labels_of(adapter, features_a, features_b, config, target, device)
        for task, b, a in zip(target.evaluations, before, after):
            for n, value in a["recall"].items():
                writer.add_scalar(f"eval/{task.name}/R@{n}", b["recall"][n], 0)
                writer.add_scalar(f"eval/{task.name}/R@{n}", value, optim.steps)
    finally:
        writer.close()

    model.set_adapter(adapter)
    model.save(output / "adapted.pt", extra={"adaptation": {
        "checkpoint": str(checkpoint), "dataset": data.dataset, "split": data.split, "steps": optim.steps,
        "temperature": 1.0 / adapter.scale.item(), "config": to_dict(config),
    }})
    results = {
        "complete": True,
        "checkpoint": str(checkpoint),
        "adapted": str(output / "adapted.pt"),
        "dataset": data.dataset,
        "split": data.split,
        "cross_view": target.cross_view,
        "views": {
            "a": {"name": target.view_names[0], "images": len(features_a)},
            "b": {"name": target.view_names[1], "images": len(features_b)},
        },
        "dims": {"frozen": adapter.in_dim, "adapted": adapter.out_dim},
        "steps": optim.steps,
        "evaluations": [
            {"name": task.name, "split": task.split.split, "protocol": task.split.protocol, "before": b, "after": a}
            for task, b, a in zip(target.evaluations, before, after)
        ],
        "skipped": target.skipped,
        "pseudo_labels": {
            "batch": {"a": per_step_a, "b": per_step_b},
            "frozen": frozen_labels,
            "adapted": adapted_labels,
            "per_step": history,
        },
        "temperature": {"initial": initial_temperature, "final": 1.0 / adapter.scale.item()},
        "seconds": {
            "features": extracted - started,
            "adaptation": trained - extracted,
            "total": time.perf_counter() - started,
        },
        "config": to_dict(config),
    }
    write_results(output, results)
    for line in _closing_lines(results):
        log(line)
    log(f"adapted model written to {output / 'adapted.pt'}; results in {output / 'results.md'}")
    return results


def _closing_lines(results: Dict[str, Any]) -> List[str]:
    """Before -> after of every evaluation (R@1, R@5, AP) and of the pseudo-labels."""
    lines = []
    for task in results["evaluations"]:
        b, a = task["before"], task["after"]
        recall = ", ".join(f"R@{n} {b['recall'][n]:.1f} -> {a['recall'][n]:.1f}" for n in list(a["recall"])[:2])
        ap = "" if a["ap"] is None else f", AP {b['ap']:.1f} -> {a['ap']:.1f}"
        lines.append(f"{task['name']}: {recall}{ap}")
    labels = results["pseudo_labels"]
    lines.append(f"pseudo-labels ({_scope_words(results['config'])}): {_labels_line(labels['frozen'])} from the frozen features, "
                 f"{_labels_line(labels['adapted'])} from the adapted ones")
    return lines
