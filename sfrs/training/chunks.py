"""One chunk of training: re-encode the descriptor cache with the current student, then
mine the chunk's tuples (best positive, hard negatives, difficult positives and their
teacher labels). Mining runs on the main process and returns indices, never images;
the result is broadcast to every process and saved with the training state."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np

from sfrs import distributed
from sfrs.training.difficult import labelled_candidates, lookup_labels, nearest_candidates, pick_difficult_positives
from sfrs.training.mining import HardNegativeMiner
from sfrs.training.run import TrainingRun
from sfrs.training.softlabels import SoftLabels
from sfrs.training.tuples import assemble_tuples


@dataclass
class MinedChunk:
    """The tuples of one chunk.

    Attributes:
        rows: (T,) kept-query rows. tuples: (T, 2 + N + M) ids (see
            :mod:`sfrs.training.tuples`). num_negatives: N (0 when no term uses hard
            negatives: none are mined). teacher: (T, M, 9) labels of the difficult
            positives, or None when no term uses them.
    """

    rows: np.ndarray
    tuples: np.ndarray
    num_negatives: int
    teacher: Optional[np.ndarray] = None

    def to_state(self) -> Dict[str, Any]:
        return {"rows": self.rows, "tuples": self.tuples, "num_negatives": self.num_negatives,
                "teacher": self.teacher}

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "MinedChunk":
        """The chunk of :meth:`to_state`, its arrays stored as tensors or (version 2 states) numpy."""
        teacher = state.get("teacher")
        return cls(rows=np.asarray(state["rows"]), tuples=np.asarray(state["tuples"]),
                   num_negatives=int(state["num_negatives"]),
                   teacher=None if teacher is None else np.asarray(teacher))


def mine_chunk(
    run: TrainingRun,
    model,
    miner: HardNegativeMiner,
    rows: np.ndarray,
    *,
    generation: int,
    rng_key: tuple,
    labels: Optional[SoftLabels],
    with_difficult: bool,
    with_negatives: bool = True,
) -> MinedChunk:
    """Encode the cache with ``model`` (sharded) and mine the tuples of kept-query ``rows``.

    Args:
        rng_key: seeds the negative pools (e.g. (seed, generation, epoch, chunk)).
        labels: the generation's teacher labels (needed when ``with_difficult``).
        with_difficult: an active term needs difficult positives and their labels.
        with_negatives: an active term needs hard negatives; without, none are mined
            (only the best positive, which needs the same descriptor cache).
    """
    mining = run.config.mining
    ts, split = run.training_set, run.train_split
    query_ids = ts.query_ids[rows]
    by_student = with_difficult and mining.difficult_positives_by == "student"
    rerank = by_student and mining.rerank and generation >= 1
    database = run.extract(model, split.database_paths, "cache: database")
    kept_queries = None
    if rerank:  # re-ranking runs on the joint set: every kept training query + the database
        kept_queries = run.extract(model, run.kept_query_paths, "cache: queries")
        queries = kept_queries[rows]
    else:
        queries = run.extract(model, [split.query_paths[i] for i in query_ids], "cache: queries")
    chunk = None
    if distributed.is_main():
        if with_negatives:
            rng = np.random.default_rng(list(rng_key) + [7])
            best_positive, negatives = miner.mine(rows, queries, database, rng)
        else:
            best_positive = miner.best_positives(rows, queries, database)
            negatives = np.zeros((len(rows), 0), dtype=np.int64)
        difficult = np.zeros((len(rows), 0), dtype=np.int64)
        teacher = None
        if with_difficult:
            if by_student:
                candidates = nearest_candidates(queries, database, labelled_candidates(labels, rows),
                                                mining.positive_candidates)
                difficult = pick_difficult_positives(
                    candidates, keep=mining.difficult_positives, rerank=rerank, probes=rows,
                    query_descriptors=kept_queries, database_descriptors=database, k1=mining.rerank_k1,
                    k2=mining.rerank_k2, lam=mining.rerank_lambda, distance=mining.rerank_distance,
                )
            else:  # picked by the teacher once per generation: its labelled positives
                difficult = labels.positive_ids[rows][:, : mining.difficult_positives]
            teacher = lookup_labels(labels, rows, difficult)
        chunk = MinedChunk(rows=np.asarray(rows, dtype=np.int64), num_negatives=negatives.shape[1],
                           tuples=assemble_tuples(query_ids, best_positive, negatives, difficult), teacher=teacher)
    return distributed.broadcast_object(chunk)
