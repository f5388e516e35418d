"""The teacher's soft labels cached in HDF5 (SFRS §3.2-3.3): the file format.

Generation g's labels are made once by the final model of generation g-1
(:mod:`sfrs.training.teacher`) and read by generation g; the teacher never runs inside
a training step. For every kept training query they hold the cosine similarities
between the query's global descriptor and the 9 regions of each labelled positive
(every positive within the training radius by default, so that the student can pick
its difficult positives among them at every refresh). Raw similarities are stored (not
probabilities): the label distribution is softmax(similarity / teacher_temperature)
over the valid (positive, region) entries of the positives picked.

File layout (``softlabels/gen{g}.h5``):
    query_ids      (Q,)        int64   split query ids, one per kept training query
    positive_ids   (Q, P)      int64   labelled positives (database ids), -1 padded
    similarities   (Q, P, 9)   float32 cosine similarities, region order of REGION_NAMES
    attrs: generation, teacher_temperature, fingerprint, regions, teacher
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import h5py
import numpy as np

from sfrs.errors import DataError
from sfrs.models import REGION_NAMES
from sfrs.utils.io import atomic_path


@dataclass(frozen=True, eq=False)
class SoftLabels:
    """Labels of one generation; row r belongs to kept training query r."""

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
