"""The resumable state of a training run: where it is, what it has measured, and what
a resumed run needs to continue bit for bit (weights, optimiser, miner memory, loss
terms' state, the chunk of tuples in progress, random generators).

Only ``checkpoints/last.pt`` and the epoch checkpoints hold a state; they are written
atomically, so a run killed at any moment resumes from the last one written. Since
version 3 they hold tensors and plain data only (numpy arrays as tensors, read back with
``np.asarray``); version 2 files hold numpy objects and are read only when trusted.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from sfrs.errors import CheckpointError, ConfigError
from sfrs.utils.checkpoint_file import load_checkpoint_file, save_checkpoint_file

STATE_FORMAT = "sfrs-train-state"
STATE_VERSION = 3
READABLE_VERSIONS = (2, 3)

#: config keys that may differ on resume (they change speed, not results).
RESUME_MAY_CHANGE = {("data", "num_workers"), ("data", "batch_size")}


@dataclass
class Position:
    """Where training stands; ``step`` counts optimiser steps done in the current chunk.

    ``started`` is False while the generation's student has not been built yet (a fresh
    run, or just after the previous generation ended)."""

    generation: int = 0
    epoch: int = 0
    chunk: int = 0
    step: int = 0
    global_step: int = 0
    started: bool = False


@dataclass
class History:
    """What the run has measured: one record per finished generation and epoch, the best
    validation model so far and the wall time spent."""

    generations: List[Dict[str, Any]] = field(default_factory=list)
    epochs: List[Dict[str, Any]] = field(default_factory=list)
    best: Optional[Dict[str, Any]] = None
    seconds: float = 0.0

    def steps_done(self) -> int:
        return int(sum(e.get("steps", 0) for e in self.epochs))


@dataclass
class TrainingState:
    """Everything ``checkpoints/last.pt`` holds besides the random generators.

    ``model`` is the network payload of :meth:`GeoNet.checkpoint_payload`, so the file is
    also a model file for ``sfrs-eval``. ``chunk`` is the mined chunk in progress (see
    :class:`sfrs.training.chunks.MinedChunk`), kept so that a resumed run trains on the
    very same tuples."""

    config: Dict[str, Any]
    position: Position
    history: History
    model: Optional[Dict[str, Any]] = None
    optimizer: Optional[Dict[str, Any]] = None
    scheduler: Optional[Dict[str, Any]] = None
    miner: Optional[Dict[str, np.ndarray]] = None
    terms: Optional[Dict[str, Any]] = None
    chunk: Optional[Dict[str, Any]] = None
    #: the fp16 loss scaler's state (scale, growth tracker); None when none runs
    scaler: Optional[Dict[str, Any]] = None


def rng_state() -> Dict[str, Any]:
    name, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):  # version 3; version 2 kept numpy's own tuple
        numpy_state = (numpy_state["name"], np.asarray(numpy_state["key"]).astype(np.uint32),
                       numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"])
    np.random.set_state(numpy_state)
    random.setstate(state["python"])


def save_state(path: Path, state: TrainingState) -> None:
    payload = {
        "format": STATE_FORMAT, "version": STATE_VERSION,
        **{f.name: getattr(state, f.name) for f in dataclasses.fields(state)},
        "position": dataclasses.asdict(state.position),
        "history": dataclasses.asdict(state.history),
        "rng": rng_state(),
    }
    save_checkpoint_file(payload, path)


def load_state(path: Path, trust: bool = False) -> Optional[TrainingState]:
    """The state in ``path`` (random generators restored), or None when there is none;
    ``trust`` also reads a file holding pickled objects (version 2)."""
    if not path.exists():
        return None
    payload = load_checkpoint_file(path, trust, what="training state",
                                   hint="remove it to resume from the last epoch checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an sfrs training state")
    if payload.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: training state version {payload.get('version')} is not "
                              f"{STATE_VERSION}; it was written by another sfrs version: use another --output")
    set_rng_state(payload["rng"])
    names = {f.name for f in dataclasses.fields(TrainingState)}
    fields = {k: v for k, v in payload.items() if k in names}
    fields["position"] = Position(**payload["position"])
    fields["history"] = History(**payload["history"])
    return TrainingState(**fields)


def check_same_run(saved: Dict[str, Any], current: Dict[str, Any], root: Path) -> None:
    """Refuse to resume a run folder with another configuration; a longer or shorter
    generation schedule that agrees on the common generations is allowed."""
    for section, values in current.items():
        if not isinstance(values, dict):
            if saved.get(section) != values:
                raise ConfigError(
                    f"{root}: holds a run with {section}={saved.get(section)!r}, not {values!r}; use another --output"
                )
            continue
        for key, value in values.items():
            if (section, key) in RESUME_MAY_CHANGE:
                continue
            old = saved.get(section, {}).get(key)
            if (section, key) == ("train", "generations"):
                old = old or []
                if old[: len(value)] != value[: len(old)]:
                    raise ConfigError(f"{root}: holds a run with another generation schedule; use another --output")
                continue
            if old != value:
                raise ConfigError(f"{root}: holds a run with {section}.{key}={old!r}, not {value!r}; use another --output")
