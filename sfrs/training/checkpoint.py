"""Run folder layout and resumable training state.

A run folder holds::

    config.yaml              the exact configuration (resume refuses a different one)
    checkpoints/last.pt      the latest resumable state (written every few steps)
    checkpoints/gen{g}_ep{e}.pt  resumable state at the end of each epoch
    checkpoints/gen{g}_final.pt  the model at the end of generation g (teacher of g+1)
    best.pt / final.pt       models (best on validation; last generation's final)
    softlabels/gen{g}.h5     teacher labels supervising generation g
    cache/                   k-means initialisation
    tb/                      TensorBoard
    results.json / results.md
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch

from sfrs.errors import CheckpointError
from sfrs.utils.io import atomic_torch_save

STATE_FORMAT = "sfrs-train-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    def epoch_checkpoint(self, generation: int, epoch: int) -> Path:
        return self.checkpoints / f"gen{generation}_ep{epoch}.pt"

    def generation_final(self, generation: int) -> Path:
        return self.checkpoints / f"gen{generation}_final.pt"

    def soft_labels(self, generation: int) -> Path:
        return self.root / "softlabels" / f"gen{generation}.h5"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    @property
    def final(self) -> Path:
        return self.root / "final.pt"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def results_md(self) -> Path:
        return self.root / "results.md"

    def make(self) -> None:
        for folder in (self.checkpoints, self.root / "softlabels", self.cache, self.tensorboard):
            folder.mkdir(parents=True, exist_ok=True)


def rng_state() -> Dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_state(path: Path, state: Dict[str, Any]) -> None:
    payload = {"format": STATE_FORMAT, "version": STATE_VERSION, **state, "rng": rng_state()}
    atomic_torch_save(payload, path)


def load_state(path: Path) -> Optional[Dict[str, Any]]:
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read training state ({type(exc).__name__}); "
                              "remove it to resume from the last epoch checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an sfrs training state")
    return payload
