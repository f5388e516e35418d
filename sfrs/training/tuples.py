"""Training tuples as a Dataset that loads images by index and holds no mining state.

A tuple is ``[query, best positive, N negatives, M difficult positives]``; the query is a
split query id, every other entry a database id, difficult positives padded with -1.
Augmentation randomness is derived from (seed, tuple index), not from a global RNG, so
a resumed run sees exactly the same images as an uninterrupted one, with any number of
DataLoader workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sfrs.data.geo import Split
from sfrs.data.images import load_image


@dataclass
class TupleBatch:
    """A collated batch: every image once, plus where each tuple's images are.

    images: (K, 3, H, W); query/positive: (B,) positions into ``images``;
    negatives: (B, N); difficult: (B, M) with -1 for padding; rows: (B,) kept-query rows.
    """

    images: Tensor
    query: Tensor
    positive: Tensor
    negatives: Tensor
    difficult: Tensor
    rows: Tensor

    def to(self, device: torch.device) -> "TupleBatch":
        return TupleBatch(*(t.to(device) for t in (self.images, self.query, self.positive, self.negatives, self.difficult, self.rows)))


class TupleDataset(Dataset):
    """Item i -> (images (k,3,H,W), layout) for tuple ``tuples[i]``.

    Args:
        split: the training split (paths).
        rows: (T,) kept-query rows, carried through to the batch (soft-label lookup).
        tuples: (T, 2 + N + M) ids as described in the module docstring.
        num_negatives: N.
        transform: PIL image -> tensor, may be random (it runs under a per-item seed).
        seed: base seed of this chunk of tuples.
    """

    def __init__(
        self,
        split: Split,
        rows: np.ndarray,
        tuples: np.ndarray,
        num_negatives: int,
        transform: Callable,
        seed: int,
    ) -> None:
        self.split = split
        self.rows = np.asarray(rows, dtype=np.int64)
        self.tuples = np.asarray(tuples, dtype=np.int64)
        self.num_negatives = num_negatives
        self.transform = transform
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.tuples)

    def __getitem__(self, index: int):
        ids = self.tuples[index]
        paths = [self.split.query_paths[ids[0]]]
        valid = ids[1:] >= 0
        paths += [self.split.database_paths[i] for i in ids[1:][valid]]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + index) % (2**63))
            images = torch.stack([self.transform(load_image(p)) for p in paths])
        return images, valid, int(self.rows[index])

    def collate(self, items: Sequence[Tuple[Tensor, np.ndarray, int]]) -> TupleBatch:
        n = self.num_negatives
        images: List[Tensor] = []
        query, positive, negatives, difficult, rows = [], [], [], [], []
        offset = 0
        for tensor, valid, row in items:
            images.append(tensor)
            # positions: query at offset, then valid entries of ids[1:] in order
            slots = np.full(valid.shape, -1, dtype=np.int64)
            slots[valid] = offset + 1 + np.arange(int(valid.sum()))
            query.append(offset)
            positive.append(int(slots[0]))
            negatives.append(slots[1 : 1 + n])
            difficult.append(slots[1 + n :])
            rows.append(row)
            offset += tensor.shape[0]
        return TupleBatch(
            images=torch.cat(images),
            query=torch.tensor(query, dtype=torch.long),
            positive=torch.tensor(positive, dtype=torch.long),
            negatives=torch.from_numpy(np.stack(negatives)).long(),
            difficult=torch.from_numpy(np.stack(difficult)).long(),
            rows=torch.tensor(rows, dtype=torch.long),
        )


def assemble_tuples(
    query_ids: np.ndarray,
    best_positive: np.ndarray,
    negatives: np.ndarray,
    difficult: np.ndarray,
) -> np.ndarray:
    """(T, 2 + N + M) id array from its parts (``difficult`` may have M = 0 columns)."""
    return np.concatenate(
        [query_ids[:, None], best_positive[:, None], negatives, difficult], axis=1
    ).astype(np.int64)
