"""Checkpoint files that open without running code.

Every torch file the package writes holds tensors and plain data only (dict, list,
tuple, str, bytes, int, float, bool, None): what ``torch.load(path, weights_only=True)``
rebuilds without importing anything. Unpickling anything else can run arbitrary code,
so such a file (an older format, or one made elsewhere) is refused unless the caller
trusts it.
"""
from __future__ import annotations

import dataclasses
import pickle
import re
from collections import OrderedDict
from pathlib import PurePath
from typing import Any

import numpy as np
import torch

from sfrs.errors import CheckpointError
from sfrs.utils.io import PathLike, atomic_torch_save

TRUST_HINT = "--trust-checkpoint loads it anyway if it comes from a trusted source"

_SCALARS = (str, bytes, int, float, bool, type(None))
_TORCH_VALUES = (torch.Tensor, torch.Size, torch.dtype, torch.device)


def plain_data(obj: Any, where: str = "") -> Any:
    """``obj`` as tensors and plain data: numpy arrays become tensors (read them back with
    ``np.asarray``), numpy scalars Python numbers, paths strings, dataclasses dicts.

    Raises:
        TypeError: anything else, naming where it sits in ``obj``.
    """
    if isinstance(obj, np.generic):  # before the scalars: np.float64 is a float
        return obj.item()
    if type(obj) in _SCALARS or isinstance(obj, _TORCH_VALUES):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "US":
            return obj.tolist()
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for key, value in obj.items():
            out[plain_data(key, where)] = plain_data(value, f"{where}.{key}" if where else str(key))
        return out
    if isinstance(obj, (list, tuple)):
        items = [plain_data(value, f"{where}[{i}]") for i, value in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"{where or 'checkpoint'}: {type(obj).__name__} cannot be stored as tensors and plain data")


def save_checkpoint_file(obj: Any, path: PathLike) -> None:
    """Write :func:`plain_data` of ``obj`` to ``path`` atomically."""
    atomic_torch_save(plain_data(obj), path)


def load_checkpoint_file(path: PathLike, trust: bool = False, *, what: str = "checkpoint", hint: str = "") -> Any:
    """The content of the torch file ``path``, on the CPU.

    Only tensors and plain data are rebuilt unless ``trust`` is set; then any pickled
    object is, which runs whatever code the file names.

    Raises:
        CheckpointError: one line naming ``path``: it holds other objects (and is not
            trusted), or it cannot be read as a ``what`` (``hint`` appended).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"GLOBAL (\S+)", str(exc))
        if unsafe and not trust:
            raise CheckpointError(
                f"{path}: contains objects that could run code when loaded ({unsafe.group(1)}); {TRUST_HINT}"
            ) from None
        error: Exception = exc
    except Exception as exc:  # torch raises many types for corrupt files
        error = exc
    reason = _reason(error)
    raise CheckpointError(
        f"{path}: cannot read {what} ({type(error).__name__}{': ' + reason if reason else ''})"
        + (f"; {hint}" if hint else "")
    ) from None


def _reason(exc: Exception) -> str:
    """The informative line of a torch loading error (weights-only errors put it last)."""
    lines = [line.strip() for line in str(exc).splitlines()
             if line.strip() and not line.startswith("Check the documentation")]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Weights only load failed") else lines[0]
