"""Training tuples as a Dataset that loads images by index and holds no mining state.

A tuple is ``[query, best positive, N negatives, M difficult positives]``; the query is a
split query id, every other entry a database id, difficult positives padded with -1.
Each tuple may carry the teacher's labels of its difficult positives (M, 9), which travel
with it through collate, and extra augmented views that loss terms asked for.
Augmentation randomness is derived from (seed, tuple index), not from a global RNG, so
a resumed run sees exactly the same images as an uninterrupted one, with any number of
DataLoader workers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sfrs.data import Split, load_image


@dataclass
class TupleBatch:
    """A collated batch: every image once, plus where each tuple's images are.

    Attributes:
        images: (K, 3, H, W). query, positive: (B,) positions into ``images``.
        negatives: (B, N). difficult: (B, M) positions, -1 for padding.
        teacher: (B, M, 9) the teacher's raw cosine similarities of each query with the
            regions of its difficult positives (0 at padding), or None without labels.
        views: name -> (B, 3, H, W) extra images requested by loss terms.
    """

    images: Tensor
    query: Tensor
    positive: Tensor
    negatives: Tensor
    difficult: Tensor
    teacher: Optional[Tensor] = None
    views: Dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> "TupleBatch":
        return TupleBatch(
            images=self.images.to(device), query=self.query.to(device), positive=self.positive.to(device),
            negatives=self.negatives.to(device), difficult=self.difficult.to(device),
            teacher=self.teacher.to(device) if self.teacher is not None else None,
            views={name: view.to(device) for name, view in self.views.items()},
        )


class TupleDataset(Dataset):
    """Item i -> the images of tuple ``tuples[i]`` and what travels with them.

    Args:
        split: the training split (paths).
        tuples: (T, 2 + N + M) ids as described in the module docstring.
        num_negatives: N.
        transform: PIL image -> tensor, may be random (it runs under a per-item seed).
        seed: base seed of this chunk of tuples.
        teacher: (T, M, 9) teacher similarities per tuple, or None.
        views: name -> object with ``source`` (``query``/``positive``) and ``transform``.
    """

    def __init__(
        self,
        split: Split,
        tuples: np.ndarray,
        num_negatives: int,
        transform: Callable,
        seed: int,
        teacher: Optional[np.ndarray] = None,
        views: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.split = split
        self.tuples = np.asarray(tuples, dtype=np.int64)
        self.num_negatives = num_negatives
        self.transform = transform
        self.seed = int(seed)
        if teacher is not None and teacher.shape[:2] != (len(self.tuples), self.tuples.shape[1] - 2 - num_negatives):
            raise ValueError(f"teacher labels of shape {teacher.shape} do not fit tuples of shape {self.tuples.shape}")
        self.teacher = teacher
        self.views = dict(views or {})

    def __len__(self) -> int:
        return len(self.tuples)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        ids = self.tuples[index]
        valid = ids[1:] >= 0
        paths = [self.split.query_paths[ids[0]]] + [self.split.database_paths[i] for i in ids[1:][valid]]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + index) % (2**63))
            pictures = [load_image(p) for p in paths]
            images = torch.stack([self.transform(p) for p in pictures])
            sources = {"query": pictures[0], "positive": pictures[1]}
            if self.num_negatives:
                sources["negative"] = pictures[2]
            views = {name: view.transform(sources[view.source]) for name, view in sorted(self.views.items())}
        teacher = self.teacher[index] if self.teacher is not None else None
        return {"images": images, "valid": valid, "teacher": teacher, "views": views}

    def collate(self, items: Sequence[Dict[str, Any]]) -> TupleBatch:
        n = self.num_negatives
        query, positive, negatives, difficult = [], [], [], []
        offset = 0
        for item in items:
            # positions: query at offset, then the valid entries of ids[1:] in order
            slots = np.full(item["valid"].shape, -1, dtype=np.int64)
            slots[item["valid"]] = offset + 1 + np.arange(int(item["valid"].sum()))
            query.append(offset)
            positive.append(int(slots[0]))
            negatives.append(slots[1 : 1 + n])
            difficult.append(slots[1 + n :])
            offset += item["images"].shape[0]
        teacher = None
        if self.teacher is not None:
            teacher = torch.from_numpy(np.stack([item["teacher"] for item in items]).astype(np.float32))
        return TupleBatch(
            images=torch.cat([item["images"] for item in items]),
            query=torch.tensor(query, dtype=torch.long),
            positive=torch.tensor(positive, dtype=torch.long),
            negatives=torch.from_numpy(np.stack(negatives)).long(),
            difficult=torch.from_numpy(np.stack(difficult)).long(),
            teacher=teacher,
            views={name: torch.stack([item["views"][name] for item in items]) for name in sorted(self.views)},
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
