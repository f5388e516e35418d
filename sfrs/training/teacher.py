"""The teacher pass: once per generation, the previous generation's final model labels
image-to-region similarities for the training queries, cached in HDF5.

For each kept training query the teacher encodes the query (global descriptor) and the
9 regions of each positive to label, and stores their cosine similarities
(:mod:`sfrs.training.softlabels`). What is labelled depends on who picks the difficult
positives (``mining.difficult_positives_by``):

- ``student`` (reference): every positive within the training radius, or the
  ``mining.teacher_candidates`` nearest in the teacher's space; the student picks its
  difficult positives among them at every refresh and looks their labels up;
- ``teacher``: the teacher picks the difficult positives once (feature-nearest
  candidates, k-reciprocal re-ranked) and only those are labelled.

Region descriptors are computed once per distinct database image, batch by batch, and
consumed at once: memory stays at one batch of (B, 9, D) plus the query descriptors.
"""
from __future__ import annotations

import time
from typing import Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from sfrs import distributed
from sfrs.config import GenerationConfig, to_dict
from sfrs.data import ImageListDataset
from sfrs.models import REGION_NAMES, GeoNet, load_network
from sfrs.training.difficult import nearest_candidates, pick_difficult_positives
from sfrs.training.run import TrainingRun
from sfrs.training.softlabels import SoftLabels, read_soft_labels, write_soft_labels
from sfrs.utils.hashing import fingerprint, model_fingerprint


def teacher_labels(run: TrainingRun, generation: int, schedule: GenerationConfig) -> SoftLabels:
    """The labels supervising ``generation``, made by ``gen{generation-1}_final.pt``;
    read from ``softlabels/gen{generation}.h5`` when that file was made by the same
    teacher, data and settings, else computed (sharded over processes) and written."""
    teacher_path = run.paths.generation_final(generation - 1)
    teacher = load_network(teacher_path, run.device, run.trust_checkpoint)
    mining = run.config.mining
    expected = fingerprint(
        teacher=model_fingerprint(teacher), data=run.data_fingerprint, generation=generation,
        by=mining.difficult_positives_by, teacher_candidates=mining.teacher_candidates,
        candidates=mining.positive_candidates, keep=mining.difficult_positives, rerank=mining.rerank,
        k1=mining.rerank_k1, k2=mining.rerank_k2, lam=mining.rerank_lambda, distance=mining.rerank_distance,
        input=to_dict(run.config.model),
    )
    path = run.paths.soft_labels(generation)
    if path.exists():
        run.log(f"soft labels for generation {generation}: reusing {path}")
        return read_soft_labels(path, expected)
    started = time.perf_counter()
    ts = run.training_set
    queries = run.extract(teacher, run.kept_query_paths, "teacher: queries")
    positive_ids = _positives_to_label(run, teacher, generation, queries)
    mine = distributed.shard(ts.num_queries)
    local = region_similarities(
        teacher, queries[mine.start : mine.stop], run.train_split.database_paths,
        positive_ids[mine.start : mine.stop], device=run.device, batch_size=run.config.data.batch_size,
        num_workers=run.config.data.num_workers, progress=run.progress,
    )
    labels = SoftLabels(
        query_ids=ts.query_ids.copy(), positive_ids=positive_ids,
        similarities=distributed.all_gather_rows(local, ts.num_queries),
        teacher_temperature=schedule.teacher_temperature, fingerprint=expected, generation=generation,
    )
    if distributed.is_main():
        write_soft_labels(path, labels, teacher=str(teacher_path))
    distributed.barrier()
    labelled = int((positive_ids >= 0).sum())
    run.log(
        f"soft labels for generation {generation}: teacher pass over {ts.num_queries:,} queries and "
        f"{labelled:,} positives in {time.perf_counter() - started:.1f}s; "
        f"{labels.similarities.nbytes / 2**20:.2f} MB -> {path}"
    )
    return labels


def _positives_to_label(run: TrainingRun, teacher: GeoNet, generation: int, queries: np.ndarray) -> np.ndarray:
    """(Q, P) database ids the teacher labels per kept query, -1 padded; ``queries`` are
    the teacher's descriptors of the kept training queries (row order)."""
    mining, ts = run.config.mining, run.training_set
    if mining.difficult_positives_by == "student" and mining.teacher_candidates == 0:
        width = max(len(p) for p in ts.positives)
        out = np.full((ts.num_queries, width), -1, dtype=np.int64)
        for row, positives in enumerate(ts.positives):
            out[row, : len(positives)] = positives
        return out
    database = run.extract(teacher, run.train_split.database_paths, "teacher: database")
    chosen = None
    if distributed.is_main():  # mining runs once, not once per process
        if mining.difficult_positives_by == "student":
            chosen = nearest_candidates(queries, database, ts.positives, mining.teacher_candidates)
        else:
            candidates = nearest_candidates(queries, database, ts.positives, mining.positive_candidates)
            chosen = pick_difficult_positives(
                candidates, keep=mining.difficult_positives, rerank=mining.rerank and generation >= 1,
                probes=np.arange(ts.num_queries), query_descriptors=queries, database_descriptors=database,
                k1=mining.rerank_k1, k2=mining.rerank_k2, lam=mining.rerank_lambda, distance=mining.rerank_distance,
            )
    return distributed.broadcast_object(chosen)


@torch.inference_mode()
def region_similarities(
    teacher: GeoNet,
    query_descriptors: np.ndarray,
    database_paths: Sequence[str],
    positive_ids: np.ndarray,
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """(Q, M, 9) cosine similarities of each query's global descriptor (Q, D) with the
    regions of the database images ``positive_ids`` (Q, M); -1-padded slots get 0."""
    num_queries, m = positive_ids.shape
    out = np.zeros((num_queries, m, len(REGION_NAMES)), dtype=np.float32)
    flat = positive_ids.reshape(-1)
    needed = np.unique(flat[flat >= 0])
    # for each needed database image, the (query, slot) pairs that use it
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    was_training = teacher.training
    teacher.eval()
    dataset = ImageListDataset([database_paths[i] for i in needed], teacher.transform())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    queries = torch.from_numpy(np.ascontiguousarray(query_descriptors, dtype=np.float32))
    try:
        for images, index in tqdm(loader, desc="teacher soft labels", disable=not progress, leave=False):
            regions = teacher.region_descriptors(images.to(device)).float().cpu()  # (b, 9, D)
            ids = needed[index.numpy()]
            lo, hi = np.searchsorted(sorted_ids, ids), np.searchsorted(sorted_ids, ids + 1)
            positions = np.concatenate([order[a:b] for a, b in zip(lo, hi)])
            local = np.repeat(np.arange(len(ids)), hi - lo)
            q, slot = np.divmod(positions, m)
            sims = torch.einsum("prd,pd->pr", regions[torch.from_numpy(local)], queries[torch.from_numpy(q)])
            out[q, slot] = sims.numpy()
    finally:
        teacher.train(was_training)
    return out

