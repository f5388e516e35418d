"""The target of an adaptation: two unlabelled views to train on, and the labelled splits
evaluated before and after.

- Same-view target (a new city: any VG folder, ``.mat``, MSLS or synthetic spec): view A
  is the split's queries, view B its database (another time of day or season, another
  camera); pseudo-labels pair queries with database images.
- Cross-view target (``u1652:<root>``): view A is the drone images, view B the satellite
  tiles; the evaluation runs drone -> satellite and satellite -> drone.

Ground truth (radius or same building) only measures pseudo-label precision and recall;
nothing here hands it to the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np

from sfrs.adaptation.config import TargetConfig
from sfrs.data import Split, conventions_for, open_dataset
from sfrs.data.formats import detect_format
from sfrs.data.formats.u1652 import DIRECTIONS, DRONE_TO_SATELLITE, U1652, view_names
from sfrs.errors import DataError


@dataclass(frozen=True, eq=False)
class EvalTask:
    """One labelled retrieval evaluated before and after adaptation.

    Attributes:
        name: ``test`` or, cross-view, ``test drone->satellite``.
        split: queries and database with their ground truth.
        threshold_m, nms, query_resize: the data set's conventions (radius, spatial NMS,
            query resize: None = like the database, N = shorter side of N pixels), as
            ``sfrs-eval`` applies them.
    """

    name: str
    split: Split
    threshold_m: float
    nms: bool
    query_resize: Optional[int]

    @property
    def positives(self) -> List[np.ndarray]:
        return self.split.positives(self.threshold_m)


@dataclass(frozen=True, eq=False)
class Target:
    """What one adaptation trains on and is judged by.

    Attributes:
        spec: the ``--dataset`` spec.
        cross_view: True for University-1652 specs.
        train: the adaptation split; view A = its queries, view B = its database.
        view_names: names of views A and B (``queries``/``database`` or ``drone``/``satellite``).
        train_threshold_m: radius of the training split's ground truth (logging only).
        evaluations: the tasks evaluated before and after.
        skipped: one line per requested evaluation split that does not exist.
    """

    spec: str
    cross_view: bool
    train: Split
    view_names: Tuple[str, str]
    train_threshold_m: float
    query_resize: Optional[int]
    evaluations: List[EvalTask] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)

    def train_positive_test(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """(global A rows (K,), global B rows (K,)) -> (K,) bool: does the pair match?

        For logging pseudo-label precision; built from the training split's ground truth.
        """
        positives = self.train.positives(self.train_threshold_m)
        num_b = self.train.num_database
        keys = np.concatenate(
            [np.asarray(p, dtype=np.int64) + a * num_b for a, p in enumerate(positives)] or [np.zeros(0, np.int64)]
        )
        keys = np.unique(keys)

        def is_positive(rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
            query = np.asarray(rows_a, dtype=np.int64) * num_b + np.asarray(rows_b, dtype=np.int64)
            return np.isin(query, keys, assume_unique=False)

        return is_positive

    def summary(self) -> List[str]:
        """The target in numbers, a few lines."""
        a, b = self.view_names
        lines = [
            f"target {self.train.dataset} [{self.train.split}]: {self.train.num_queries:,} {a} vs "
            f"{self.train.num_database:,} {b} images (ground truth used only to log pseudo-label precision)"
        ]
        for task in self.evaluations:
            lines.append(
                f"evaluated before and after: {task.name} ({task.split.num_queries:,} queries, "
                f"{task.split.num_database:,} database, positives within {task.threshold_m:g} m"
                f"{', spatial NMS' if task.nms else ''})"
            )
        lines += self.skipped
        return lines


def _task(name: str, split: Split) -> EvalTask:
    conventions = conventions_for(split.dataset)
    return EvalTask(name, split, conventions.threshold_m, conventions.nms, conventions.query_resize)


def open_target(data: TargetConfig) -> Target:
    """Open the adaptation split and the evaluation splits of ``data.dataset``.

    Raises:
        DataError: the adaptation split cannot be opened. Missing evaluation splits are
            listed in ``Target.skipped`` instead.
    """
    spec = data.dataset
    dataset_format = detect_format(spec.replace("{split}", data.split))
    cross_view = dataset_format is not None and dataset_format.name == U1652.name
    directions: Tuple[Optional[str], ...] = DIRECTIONS if cross_view else (None,)
    train = open_dataset(spec, data.split, data.images_root, protocol=DRONE_TO_SATELLITE if cross_view else None)
    names = view_names(DRONE_TO_SATELLITE) if cross_view else ("queries", "database")
    evaluations: List[EvalTask] = []
    skipped: List[str] = []
    for split_name in data.eval_splits:
        try:
            splits = [open_dataset(spec, split_name, data.images_root, protocol=d) for d in directions]
        except DataError as exc:
            skipped.append(f"not evaluated: {split_name} ({exc})")
            continue
        for direction, split in zip(directions, splits):
            evaluations.append(_task(split_name if direction is None else f"{split_name} {direction}", split))
    conventions = conventions_for(train.dataset)
    return Target(
        spec=spec, cross_view=cross_view, train=train, view_names=names,
        train_threshold_m=conventions.threshold_m, query_resize=conventions.query_resize,
        evaluations=evaluations, skipped=skipped,
    )
