"""Teacher soft labels cached in HDF5 (SFRS §3.2-3.3).

After generation g the trained network runs ONCE as teacher over every kept training
query and its difficult positives and stores, per query, the cosine similarities
between the query's global descriptor and the 9 regions of each difficult positive.
Generation g+1 reads them; the teacher never runs inside a training step. Raw
similarities are stored (not probabilities) so that the label distribution can be
formed with any temperature: softmax(similarity / teacher_temperature) over the valid
(positive, region) entries.

File layout (``softlabels/gen{g}.h5``):
    query_ids      (Q,)        int64   split query ids, one per kept training query
    positive_ids   (Q, M)      int64   difficult positives (database ids), -1 padded
    similarities   (Q, M, 9)   float32 cosine similarities, region order of REGION_NAMES
    attrs: generation, teacher_temperature, fingerprint, regions, teacher
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader

from sfrs.data.images import ImageListDataset
from sfrs.errors import DataError
from sfrs.models.heads import REGION_NAMES
from sfrs.models.network import GeoNet
from sfrs.utils.io import atomic_path


@dataclass(frozen=True, eq=False)
class SoftLabels:
    query_ids: np.ndarray
    positive_ids: np.ndarray
    similarities: np.ndarray
    teacher_temperature: float
    fingerprint: str
    generation: int


def write_soft_labels(path: Union[str, Path], labels: SoftLabels, teacher: str = "") -> None:
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("query_ids", data=labels.query_ids.astype(np.int64))
            handle.create_dataset("positive_ids", data=labels.positive_ids.astype(np.int64))
            handle.create_dataset("similarities", data=labels.similarities.astype(np.float32), compression="gzip")
            handle.attrs["generation"] = labels.generation
            handle.attrs["teacher_temperature"] = labels.teacher_temperature
            handle.attrs["fingerprint"] = labels.fingerprint
            handle.attrs["regions"] = ",".join(REGION_NAMES)
            handle.attrs["teacher"] = teacher


def read_soft_labels(path: Union[str, Path], expected_fingerprint: str = "") -> SoftLabels:
    """Read a label file; refuse one produced by another teacher/data/mining setup."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            found = str(handle.attrs.get("fingerprint", ""))
            if expected_fingerprint and found != expected_fingerprint:
                raise DataError(
                    f"{path}: soft labels were made by another teacher or data set "
                    f"(fingerprint {found}, expected {expected_fingerprint}); delete the file to recompute"
                )
            regions = str(handle.attrs.get("regions", ""))
            if regions != ",".join(REGION_NAMES):
                raise DataError(f"{path}: region order '{regions}' is not {','.join(REGION_NAMES)}")
            return SoftLabels(
                query_ids=handle["query_ids"][()],
                positive_ids=handle["positive_ids"][()],
                similarities=handle["similarities"][()],
                teacher_temperature=float(handle.attrs["teacher_temperature"]),
                fingerprint=found,
                generation=int(handle.attrs["generation"]),
            )
    except (OSError, KeyError) as exc:
        raise DataError(f"{path}: unreadable soft-label file ({exc})") from None


@torch.inference_mode()
def teacher_similarities(
    teacher: GeoNet,
    query_descriptors: np.ndarray,
    database_paths: Sequence[str],
    positive_ids: np.ndarray,
    transform,
    *,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """(Q, M, 9) cosine similarities of each query's global descriptor with the regions of
    its difficult positives; -1-padded slots get 0.

    Region descriptors are computed once per distinct database image, batch by batch,
    and consumed at once, so memory stays at one batch of (B, 9, D) plus the queries.
    """
    from tqdm import tqdm

    num_queries, m = positive_ids.shape
    out = np.zeros((num_queries, m, len(REGION_NAMES)), dtype=np.float32)
    flat = positive_ids.reshape(-1)
    needed = np.unique(flat[flat >= 0])
    # for each needed database image, the (query, slot) pairs that use it
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    was_training = teacher.training
    teacher.eval()
    dataset = ImageListDataset([database_paths[i] for i in needed], transform)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    queries = torch.from_numpy(np.ascontiguousarray(query_descriptors, dtype=np.float32))
    try:
        for images, index in tqdm(loader, desc="teacher soft labels", disable=not progress, leave=False):
            regions = teacher.region_descriptors(images.to(device)).float().cpu()  # (b, 9, D)
            for local, db_id in zip(range(len(index)), needed[index.numpy()]):
                lo, hi = np.searchsorted(sorted_ids, [db_id, db_id + 1])
                for position in order[lo:hi]:
                    q, slot = divmod(int(position), m)
                    out[q, slot] = (regions[local] @ queries[q]).numpy()
    finally:
        teacher.train(was_training)
    return out

