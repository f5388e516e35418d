"""What every part of a training run shares: the configuration, the run folder, the
data, the device, logging (terminal and TensorBoard), extraction and evaluation."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from sfrs import distributed
from sfrs.config import Config
from sfrs.data import Split, open_dataset
from sfrs.retrieval import TestTime, evaluate, extract_descriptors_sharded
from sfrs.training.mining import TrainingSet, build_training_set
from sfrs.training.run_folder import RunPaths
from sfrs.training.run_log import RunLog


def split_fingerprint(split: Split) -> str:
    """Identity of a split's content (file names and positions), for cache keys."""
    digest = hashlib.sha256()
    for path in list(split.database_paths) + list(split.query_paths):
        digest.update(Path(path).name.encode())
    digest.update(np.ascontiguousarray(split.database_utm).tobytes())
    digest.update(np.ascontiguousarray(split.query_utm).tobytes())
    return digest.hexdigest()[:16]


class TrainingRun:
    """One run: ``config`` trained into ``paths``; the splits are opened on construction.
    ``trust_checkpoint``: read model and state files holding pickled objects (which can run code)."""

    def __init__(
        self,
        config: Config,
        output: Path,
        *,
        device: torch.device,
        progress: bool = True,
        log: Callable[[str], None] = print,
        trust_checkpoint: bool = False,
    ) -> None:
        self.config = config
        self.trust_checkpoint = trust_checkpoint
        self.paths = RunPaths(Path(output))
        self.device = device
        self.progress = progress
        self.log = RunLog(log)
        data = config.data
        self.train_split = open_dataset(data.dataset, "train", data.images_root)
        self.val_split = open_dataset(data.dataset, config.train.val_split, data.images_root)
        self.test_split = open_dataset(data.dataset, config.train.test_split, data.images_root)
        self.training_set: TrainingSet = build_training_set(
            self.train_split, data.train_positive_radius, data.eval_positive_radius
        )
        self.data_fingerprint = split_fingerprint(self.train_split)
        self._writer = None
        #: the global step a resumed run continues from: TensorBoard drops what the
        #: previous process logged from there on, since the resumed run logs it again
        self.tensorboard_purge_step: Optional[int] = None

    def start_log(self) -> None:
        """From now on the ``log`` lines also go to ``train.log`` (main process only)."""
        if distributed.is_main():
            self.log.open(self.paths.train_log)

    @property
    def kept_query_paths(self) -> list:
        """Paths of the kept training queries, in row order."""
        return [self.train_split.query_paths[i] for i in self.training_set.query_ids]

    @property
    def recall_keys(self) -> Tuple[str, ...]:
        return tuple(str(n) for n in self.config.eval.recall_at)

    def queries_per_epoch(self) -> int:
        limit = self.config.train.queries_per_epoch
        kept = self.training_set.num_queries
        return min(limit, kept) if limit > 0 else kept

    @property
    def writer(self):
        """TensorBoard on the main process; a sink elsewhere."""
        if self._writer is None:
            if distributed.is_main():
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.paths.tensorboard), purge_step=self.tensorboard_purge_step)
            else:
                self._writer = _NullWriter()
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.log.close()

    def extract(self, model, paths: Sequence[str], what: str) -> np.ndarray:
        """Global descriptors of ``paths`` in order; each process encodes its shard, all get all."""
        return extract_descriptors_sharded(
            model, list(paths), model.transform(), batch_size=self.config.data.batch_size,
            device=self.device, num_workers=self.config.data.num_workers,
            progress=what if self.progress else False,
        )

    def evaluate(self, model, split: Split) -> Tuple[Dict[str, Any], Optional[np.ndarray]]:
        """Recall@N (``eval.recall_at``) on ``split``: sharded extraction (at ``eval.precision``),
        one search on the main process; the report reaches every process, the predictions
        only the main one."""
        evaluation = evaluate(
            model, split, device=self.device, batch_size=self.config.data.batch_size,
            num_workers=self.config.data.num_workers, ns=self.config.eval.recall_at,
            threshold=self.config.data.eval_positive_radius, index=self.config.eval.index, progress=self.progress,
            test_time=TestTime(precision=self.config.eval.precision),
        )
        report = evaluation.report if evaluation is not None else None
        return distributed.broadcast_object(report), evaluation.predictions if evaluation is not None else None

    def recall(self, report: Dict[str, Any]) -> Dict[str, float]:
        """The configured Recall@N of a report, rounded for the records."""
        return {n: round(v, 2) for n, v in report["recall"].items() if n in self.recall_keys}


class _NullWriter:
    """TensorBoard stand-in for processes other than the main one."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
