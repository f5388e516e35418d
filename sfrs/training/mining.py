"""Mining in the main process: returns indices, never images (SFRS §3.1, NetVLAD §4).

- positives of a training query: database images within the training radius (10 m);
  queries without one are dropped;
- hard negatives: the nearest (in the current descriptor cache) of a random pool of
  database images outside the evaluation radius (25 m), plus the query's previous
  hardest ones;
- difficult positives: see :mod:`sfrs.training.difficult`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from sfrs.data import Split, positives_within
from sfrs.errors import DataError


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """The usable training queries of a split and their geographic ground truth.

    ``query_ids[r]`` is the split query index of kept row ``r``; ``positives[r]`` the
    database ids within the training radius (nearest first); ``non_negatives[r]`` those
    within the evaluation radius, never used as negatives.
    """

    split: Split
    query_ids: np.ndarray
    positives: List[np.ndarray]
    non_negatives: List[np.ndarray]
    dropped: int

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)


def build_training_set(split: Split, train_radius: float, eval_radius: float) -> TrainingSet:
    positives = positives_within(split.query_utm, split.database_utm, train_radius)
    near = positives_within(split.query_utm, split.database_utm, eval_radius)
    kept = np.array([q for q, p in enumerate(positives) if p.size], dtype=np.int64)
    if kept.size == 0:
        raise DataError(
            f"{split.dataset} [{split.split}]: no query has a database image within "
            f"{train_radius:g} m: nothing to train on"
        )
    return TrainingSet(
        split=split,
        query_ids=kept,
        positives=[positives[q] for q in kept],
        non_negatives=[near[q] for q in kept],
        dropped=int(split.num_queries - kept.size),
    )


def squared_distances(query: np.ndarray, others: np.ndarray) -> np.ndarray:
    """||q - o||^2 of one query (D,) to rows (K, D), in float32."""
    diff = others - query[None, :]
    return np.einsum("kd,kd->k", diff, diff)


class HardNegativeMiner:
    """Per kept query: the best positive and ``num_negatives`` hard negatives.

    State (the previous hardest negatives of every query) is part of the training
    checkpoint through :meth:`state_dict`, so a resumed run mines exactly the same.
    """

    def __init__(self, training_set: TrainingSet, num_negatives: int, pool_size: int) -> None:
        self.training_set = training_set
        self.num_negatives = num_negatives
        self.pool_size = pool_size
        self.previous_hardest = np.full((training_set.num_queries, num_negatives), -1, dtype=np.int64)

    def mine(
        self,
        rows: np.ndarray,
        query_descriptors: np.ndarray,
        database_descriptors: np.ndarray,
        rng: np.random.Generator,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Best positive (len(rows),) and negatives (len(rows), N) as database ids.

        ``query_descriptors[i]`` belongs to kept row ``rows[i]``.
        """
        num_database = database_descriptors.shape[0]
        best_positive = self.best_positives(rows, query_descriptors, database_descriptors)
        negatives = np.empty((len(rows), self.num_negatives), dtype=np.int64)
        for i, row in enumerate(rows):
            query = query_descriptors[i]

            pool_size = min(self.pool_size, num_database)
            pool = rng.choice(num_database, size=pool_size, replace=False)
            previous = self.previous_hardest[row]
            pool = np.union1d(pool, previous[previous >= 0])
            pool = pool[~np.isin(pool, self.training_set.non_negatives[row])]
            if pool.size == 0:
                split = self.training_set.split
                raise DataError(
                    f"{split.dataset} [{split.split}]: query {self.training_set.query_ids[row]} has no "
                    "database image outside the negative radius"
                )
            order = np.argsort(squared_distances(query, database_descriptors[pool]), kind="stable")
            hardest = pool[order[: self.num_negatives]]
            if hardest.size < self.num_negatives:  # tiny databases: repeat rather than fail
                hardest = np.resize(hardest, self.num_negatives)
            negatives[i] = hardest
            self.previous_hardest[row] = hardest
        return best_positive, negatives

    def best_positives(self, rows: np.ndarray, query_descriptors: np.ndarray,
                       database_descriptors: np.ndarray) -> np.ndarray:
        """(len(rows),) the feature-nearest positive (within the training radius) of each
        row; ``query_descriptors[i]`` belongs to kept row ``rows[i]``."""
        out = np.empty(len(rows), dtype=np.int64)
        for i, row in enumerate(rows):
            positives = self.training_set.positives[row]
            distances = squared_distances(query_descriptors[i], database_descriptors[positives])
            out[i] = positives[int(np.argmin(distances))]
        return out

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {"previous_hardest": self.previous_hardest.copy()}

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        previous = np.asarray(state["previous_hardest"], dtype=np.int64)
        if previous.shape != self.previous_hardest.shape:
            raise ValueError(f"miner state of shape {previous.shape} does not fit {self.previous_hardest.shape}")
        self.previous_hardest = previous.copy()
