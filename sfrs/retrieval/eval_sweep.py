"""Evaluation-only sweeps: Recall@N of one model over several values of one evaluation
setting, without retraining, each setting paying only for what it changes.

- ``threshold`` (positive radius, metres): descriptors extracted and searched once, to
  the depth of the largest N; only the ground truth (``Split.positives(radius)``, a
  radius search on UTM) changes per value.
- ``image_size`` (``HxW``, or one number: the shorter side, aspect kept): one full
  evaluation per size, as ``sfrs-eval --image-size H,W`` / ``--resize shorter_side:N``
  (:class:`~sfrs.retrieval.test_time.TestTime`): both sets at that size, unless the data
  set's conventions resize queries (Tokyo 24/7).
- ``pca_dim``: PCA-whitening fitted once on training descriptors at the largest
  dimension; each smaller dimension uses its leading components
  (:func:`leading_components`), which equals a separate fit at that dimension (the
  covariance's eigenvectors do not depend on how many are kept; tested against
  separate float64 fits). Database and queries are extracted once, without whitening.

The other settings follow the split's conventions (:func:`resolve_protocol`): radius,
spatial NMS, query resizing. Outputs ``sweep_<key>.json``, ``.md`` and ``.png``
(Recall@N against the value).
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from sfrs import distributed
from sfrs.data import Split
from sfrs.errors import ConfigError
from sfrs.models import GeoNet, PCAWhitening
from sfrs.retrieval.evaluate import evaluate
from sfrs.retrieval.pca import fit_model_pca
from sfrs.retrieval.protocol import describe_query_resize, resolve_protocol
from sfrs.retrieval.recall import count_queries_without_positive, recall_at_n
from sfrs.retrieval.report import rank_database
from sfrs.retrieval.split_descriptors import extract_split
from sfrs.retrieval.test_time import TestTime
from sfrs.utils.io import atomic_path, atomic_write_json, atomic_write_text

SWEEP_KEYS = ("threshold", "image_size", "pca_dim")
SWEEP_FORMAT = "sfrs-eval-sweep"


def parse_sweep(text: str) -> Tuple[str, List[Any]]:
    """``threshold=5,10,25`` / ``image_size=480x640,240x320`` (or ``image_size=480,240``,
    shorter sides) / ``pca_dim=64,128,256`` -> (key, values).

    Raises:
        ConfigError: unknown key or a value that is not a positive number / size.
    """
    key, sep, listed = text.partition("=")
    key = key.strip()
    if not sep or key not in SWEEP_KEYS:
        raise ConfigError(f"--sweep '{text}': expected KEY=V1,V2,... with KEY one of {', '.join(SWEEP_KEYS)}")
    items = [item.strip() for item in listed.split(",") if item.strip()]
    if not items:
        raise ConfigError(f"--sweep '{text}': no values")
    values: List[Any] = []
    for item in items:
        try:
            if key == "threshold":
                value: Any = float(item)
                ok = value > 0 and np.isfinite(value)
            elif key == "image_size" and re.fullmatch(r"\d+[xX]\d+", item):
                value = tuple(int(v) for v in re.split("[xX]", item))
                ok = min(value) > 0
            else:
                value = int(item)
                ok = value > 0
        except ValueError:
            ok = False
        if not ok:
            kind = {"threshold": "a positive radius in metres", "image_size": "HxW or a shorter side in pixels",
                    "pca_dim": "a positive dimension"}[key]
            raise ConfigError(f"--sweep {key}: '{item}' is not {kind}")
        values.append(value)
    if len(set(values)) != len(values):
        raise ConfigError(f"--sweep {key}: repeated values in '{listed}'")
    return key, values


def value_label(key: str, value: Any) -> str:
    """``25 m``, ``480x640``, ``shorter side 480``, ``128``: how a value is shown."""
    if key == "threshold":
        return f"{value:g} m"
    if key == "image_size":
        return f"{value[0]}x{value[1]}" if isinstance(value, tuple) else f"shorter side {value}"
    return str(value)


def leading_components(pca: PCAWhitening, dim: int) -> PCAWhitening:
    """The whitening to ``dim`` made of ``pca``'s leading ``dim`` components (same mean).

    Requires a whitening whose columns are ordered by decreasing eigenvalue, as
    :func:`~sfrs.retrieval.pca.fit_pca_whitening` returns them.
    """
    if not 1 <= dim <= pca.out_dim:
        raise ConfigError(f"PCA dimension {dim} is outside 1..{pca.out_dim}, the dimensions fitted")
    bias = None if pca.bias is None else pca.bias[:dim]
    return PCAWhitening(pca.mean, pca.projection[:, :dim], bias)


def _recall_row(
    value: Any, key: str, predictions: np.ndarray, positives: Sequence[np.ndarray], ns: Sequence[int],
    dim: int, threshold: float,
) -> Dict[str, Any]:
    recalls = recall_at_n(predictions, positives, ns)
    return {
        "value": list(value) if isinstance(value, tuple) else value, "label": value_label(key, value),
        "recall": {str(n): float(r) for n, r in recalls.items()}, "threshold_m": float(threshold),
        "queries_without_positive": count_queries_without_positive(positives), "descriptor_dim": int(dim),
    }


def threshold_rows(
    split: Split, database: np.ndarray, queries: np.ndarray, radii: Sequence[float], *,
    ns: Sequence[int] = (1, 5, 10, 20), index: str = "Flat", nms: bool = False,
) -> List[Dict[str, Any]]:
    """Recall@N at each positive radius from one search (top max(N)) of ``queries`` (Q, D)
    in ``database`` (N, D)."""
    ranking = rank_database(split, database, queries, max(int(n) for n in ns), index=index, nms=nms)
    return [_recall_row(r, "threshold", ranking.indices, split.positives(float(r)), ns, database.shape[1], r)
            for r in radii]


def _image_size_rows(
    model: GeoNet, split: Split, size: Any, *, ns: Sequence[int], index: str, conventions: Optional[str],
    device: Any, batch_size: int, num_workers: int, progress: bool,
) -> List[Dict[str, Any]]:
    """One evaluation at ``size`` ((H, W) or a shorter side): extraction and search anew.
    Empty on torchrun processes other than the main one."""
    size = tuple(int(v) for v in size) if isinstance(size, (tuple, list)) else int(size)
    test_time = TestTime(image_size=size) if isinstance(size, tuple) else TestTime(shorter_side=size)
    evaluation = evaluate(model, split, device=device, batch_size=batch_size, num_workers=num_workers, ns=ns,
                          conventions=conventions, index=index, progress=progress, test_time=test_time)
    if evaluation is None:
        return []
    report = evaluation.report
    return [{
        "value": list(size) if isinstance(size, tuple) else size, "label": value_label("image_size", size),
        "recall": {str(n): float(r) for n, r in report["recall"].items()}, "threshold_m": report["threshold_m"],
        "queries_without_positive": report["queries_without_positive"], "descriptor_dim": report["descriptor_dim"],
        "query_images": report["evaluation_protocol"]["query_images"],
        "database_images": report["evaluation_protocol"]["database_images"],
    }]


def _whiten(pca: PCAWhitening, descriptors: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return pca(torch.from_numpy(np.ascontiguousarray(descriptors, dtype=np.float32))).numpy()


def run_eval_sweep(
    model: GeoNet,
    split: Split,
    key: str,
    values: Sequence[Any],
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
    output_dir: Optional[Union[str, Path]] = None,
    ns: Sequence[int] = (1, 5, 10, 20),
    index: str = "Flat",
    conventions: Optional[str] = None,
    train_split: Optional[Union[Split, Callable[[], Split]]] = None,
    pca_samples: int = 10000,
    seed: int = 0,
) -> Dict[str, Any]:
    """Recall@N of ``model`` on ``split`` for each value of ``key`` (see the module docstring).

    Args:
        key: ``threshold`` (metres), ``image_size`` ((H, W) or a shorter side) or
            ``pca_dim`` (see :func:`parse_sweep` for the command-line form).
        output_dir: where ``sweep_<key>.json`` / ``.md`` / ``.png`` go (None: nothing
            written; under torchrun only the main process writes).
        conventions: the data set whose conventions apply (default ``split.dataset``).
        train_split: for ``pca_dim``: the split (or a function opening it) the whitening
            is fitted on, up to ``pca_samples`` images.
    Returns:
        ``{"format", "version", "key", "dataset", "split", "protocol", "rows": [{"value",
        "label", "recall": {"N": percent}, "threshold_m", "descriptor_dim",
        "queries_without_positive"}], "seconds", ...}``.
    Raises:
        ConfigError: unknown key, no values, ``pca_dim`` without a training split or on an
            adapted model.
    """
    if key not in SWEEP_KEYS:
        raise ConfigError(f"evaluation sweep key '{key}' is not one of {', '.join(SWEEP_KEYS)}")
    if not values:
        raise ConfigError(f"evaluation sweep over {key}: no values")
    start = time.perf_counter()
    protocol = resolve_protocol(split, conventions)
    common = dict(device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    result: Dict[str, Any] = {
        "format": SWEEP_FORMAT, "version": 1, "key": key, "dataset": split.dataset, "split": split.split,
        "num_database": split.num_database, "num_queries": split.num_queries, "index": index,
        "protocol": protocol.to_json(),
    }
    rows: List[Dict[str, Any]] = []
    if key == "threshold":
        database, queries, _ = extract_split(model, split, query_resize=protocol.query_resize, **common)
        rows = threshold_rows(split, np.asarray(database), np.asarray(queries), [float(v) for v in values],
                              ns=ns, index=index, nms=protocol.nms)
    elif key == "image_size":
        for size in values:
            rows += _image_size_rows(model, split, size, ns=ns, index=index, conventions=conventions, **common)
        result["note"] = ("each size evaluated as sfrs-eval --image-size H,W / --resize shorter_side:N does: "
                          "database and queries at that size, unless the data set's conventions resize queries")
    else:
        rows, result["pca"] = _pca_rows(model, split, [int(v) for v in values], protocol, train_split=train_split,
                                        samples=pca_samples, seed=seed, ns=ns, index=index, **common)
    result["rows"] = rows
    result["seconds"] = time.perf_counter() - start
    if output_dir is not None and distributed.is_main():
        write_sweep_outputs(Path(output_dir), result)
    return result


def _pca_rows(
    model: GeoNet, split: Split, dims: List[int], protocol: Any, *, train_split: Any, samples: int, seed: int,
    ns: Sequence[int], index: str, device: Any, batch_size: int, num_workers: int, progress: bool,
) -> Tuple[List[Dict[str, Any]], str]:
    """One fit at max(dims) on the training split, one extraction; leading components per dim."""
    if train_split is None:
        raise ConfigError("a pca_dim sweep needs the training split to fit the whitening on")
    if getattr(model, "adapter", None) is not None:
        raise ConfigError("a pca_dim sweep whitens the head's descriptors; an adapted model expects its own")
    carried = model.pca
    model.set_pca(None)  # whiten the head's output afresh, as attach_pca does
    try:
        train = train_split() if callable(train_split) else train_split
        pca, used = fit_model_pca(model, train, max(dims), samples=samples, seed=seed, device=device,
                                  batch_size=batch_size, num_workers=num_workers, progress=progress)
        database, queries, _ = extract_split(model, split, query_resize=protocol.query_resize, device=device,
                                             batch_size=batch_size, num_workers=num_workers, progress=progress)
    finally:
        model.set_pca(carried)
    database, queries = np.asarray(database), np.asarray(queries)
    pca = pca.cpu()
    positives = split.positives(protocol.threshold_m)
    rows = []
    for dim in dims:
        whitening = leading_components(pca, dim)
        ranking = rank_database(split, _whiten(whitening, database), _whiten(whitening, queries),
                                max(int(n) for n in ns), index=index, nms=protocol.nms)
        rows.append(_recall_row(dim, "pca_dim", ranking.indices, positives, ns, dim, protocol.threshold_m))
    return rows, (f"PCA-whitening {database.shape[1]} -> {max(dims)} fitted once on {used:,} descriptors of "
                  f"{train.dataset} [{train.split}]; smaller dimensions use its leading components")


# -- outputs --------------------------------------------------------------------------------------


def render_sweep_markdown(result: Dict[str, Any]) -> str:
    """sweep_<key>.md: the protocol and one row per value."""
    ns = list(result["rows"][0]["recall"]) if result["rows"] else []
    protocol = result["protocol"]
    lines = [
        f"# Evaluation sweep over {result['key']}: {result['dataset']} [{result['split']}]", "",
        f"{result['num_database']:,} database images, {result['num_queries']:,} queries; index {result['index']}; "
        f"positives within {protocol['threshold_m']:g} m unless swept; "
        f"{'spatial NMS' if protocol['nms'] else 'no NMS'}; queries resized "
        f"{describe_query_resize(protocol['query_resize'])} unless the image size is swept.",
    ]
    for extra in ("note", "pca"):
        if extra in result:
            lines.append(f"{result[extra][0].upper()}{result[extra][1:]}.")
    lines += ["", "| " + result["key"] + " | descriptor dim | queries without positive | "
              + " | ".join(f"R@{n}" for n in ns) + " |", "|" + "---|" * (3 + len(ns))]
    for row in result["rows"]:
        lines.append(f"| {row['label']} | {row['descriptor_dim']} | {row['queries_without_positive']:,} | "
                     + " | ".join(f"{row['recall'][n]:.1f}" for n in ns) + " |")
    lines += ["", f"{result['seconds']:.1f} s in all.", ""]
    return "\n".join(lines)


def plot_sweep(path: Path, result: Dict[str, Any]) -> None:
    """sweep_<key>.png: Recall@N against the swept value (values as categories, in order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    ns = list(rows[0]["recall"]) if rows else []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = np.arange(len(rows))
    for n in ns:
        ax.plot(xs, [row["recall"][n] for row in rows], marker="o", label=f"R@{n}")
    ax.set_xticks(xs)
    ax.set_xticklabels([row["label"] for row in rows])
    ax.set_xlabel(result["key"])
    ax.set_ylabel("Recall@N (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if ns:
        ax.legend(fontsize=8)
    ax.set_title(f"{result['dataset']} [{result['split']}]: Recall@N against {result['key']}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_sweep_outputs(output_dir: Path, result: Dict[str, Any]) -> Tuple[Path, Path, Path]:
    """``sweep_<key>.json``, ``.md`` and ``.png`` in ``output_dir``, each written atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = output_dir / f"sweep_{result['key']}"
    paths = (stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png"))
    atomic_write_json(paths[0], result)
    atomic_write_text(paths[1], render_sweep_markdown(result))
    plot_sweep(paths[2], result)
    return paths
