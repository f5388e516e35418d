"""The layout of a training run folder.

A run folder holds::

    config.yaml              the exact configuration (resume refuses a different one)
    train.log                what the run printed, time-stamped (appended on resume)
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

from dataclasses import dataclass
from pathlib import Path


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
    def train_log(self) -> Path:
        return self.root / "train.log"

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
