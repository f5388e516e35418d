"""Data sets for visual geo-localization: splits with UTM ground truth, on-disk formats,
per-benchmark conventions, discovery under a root, image decoding.

Modules: ``geo`` (a split and its ground truth), ``formats`` (one module per on-disk format
behind one registry), ``conventions`` (how each benchmark is evaluated), ``discovery``
(benchmarks under a datasets root), ``images`` (decoding, transforms), ``synthetic`` (the
procedural city).

Import data names from here (``from sfrs.data import open_dataset``). Importing this package
stays cheap: the image helpers (torch) and the synthetic city generator load on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sfrs.data.conventions import KNOWN_DATASETS, DatasetConventions, canonical_name, conventions_for
from sfrs.data.discovery import find_dataset_at, find_datasets
from sfrs.data.formats import (
    DatasetFormat,
    DatasetLocation,
    dataset_spec_help,
    describe_dataset_spec,
    open_dataset,
    register_format,
    unregister_format,
)
from sfrs.data.geo import Split, positives_within

# Name -> module, imported on first access (PEP 562) so that `import sfrs.data` does not load torch.
_LAZY = {
    "load_image": "sfrs.data.images",
    "build_transform": "sfrs.data.images",
    "ImageListDataset": "sfrs.data.images",
    "unwrap_worker_error": "sfrs.data.images",
}

if TYPE_CHECKING:
    from sfrs.data.images import ImageListDataset, build_transform, load_image, unwrap_worker_error

__all__ = [
    "open_dataset",
    "describe_dataset_spec",
    "dataset_spec_help",
    "DatasetFormat",
    "register_format",
    "unregister_format",
    "Split",
    "positives_within",
    "find_datasets",
    "find_dataset_at",
    "DatasetLocation",
    "DatasetConventions",
    "conventions_for",
    "canonical_name",
    "KNOWN_DATASETS",
    "load_image",
    "build_transform",
    "ImageListDataset",
    "unwrap_worker_error",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sfrs.data' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
