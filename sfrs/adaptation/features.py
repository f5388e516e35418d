"""The frozen network's features of the target, extracted once into HDF5 and reused.

The adapter trains and is evaluated on these cached rows only, so adapting costs one
pass of the (possibly large) frozen network over the images, whatever the number of
steps. Each image list goes to ``<folder>/<name>.h5`` (dataset ``features``, float32 or
float16) through :func:`sfrs.retrieval.extract_to_hdf5`: rows are recorded as they are
written, so a killed extraction resumes where it stopped, and a file is keyed by the
network's weights, the image list, the transform and the dtype, so a file written by
another network or for other images is never reused (it is extracted afresh).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from sfrs.models import GeoNet
from sfrs.retrieval import HDF5Descriptors, extract_to_hdf5
from sfrs.retrieval.stream import descriptor_fingerprint
from sfrs.utils.hashing import model_fingerprint

DATASET = "features"


def file_stem(name: str) -> str:
    """``"test drone->satellite queries"`` -> ``"test_drone-satellite_queries"``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("->", "-")).strip("_")


class FeatureCache:
    """Frozen descriptors of image lists, cached under ``folder``.

    Args:
        model: the frozen network, without adapter (its descriptors are the adapter's input).
        folder: where the ``.h5`` files live.
        half: store float16; rows are returned as float32 either way.
    """

    def __init__(
        self,
        model: GeoNet,
        folder: Union[str, Path],
        *,
        device: Union[str, torch.device] = "cpu",
        batch_size: int = 32,
        num_workers: int = 0,
        half: bool = False,
        progress: bool = True,
    ) -> None:
        if model.adapter is not None:
            raise ValueError("the frozen features are those of the network without its adapter")
        self.model = model
        self.folder = Path(folder)
        self.device = device
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.half = half
        self.progress = progress
        self.model_hash = model_fingerprint(model)
        #: name -> fingerprint of every set handed out (what produced the rows).
        self.fingerprints: Dict[str, str] = {}
        self._by_fingerprint: Dict[str, HDF5Descriptors] = {}

    def descriptors(self, name: str, paths: Sequence[str], query_resize: Optional[int] = None) -> HDF5Descriptors:
        """The (N, D) cached features of ``paths`` (extracted now if missing or unfinished);
        ``query_resize`` as in :meth:`GeoNet.transform` (``shorter_side``)."""
        transform = self.model.transform(shorter_side=query_resize)
        fingerprint = descriptor_fingerprint(
            self.model_hash, list(paths), transform, np.float16 if self.half else np.float32
        )
        self.fingerprints[name] = fingerprint
        if fingerprint not in self._by_fingerprint:  # the same images asked under two names: one file
            self._by_fingerprint[fingerprint] = extract_to_hdf5(
                self.model, list(paths), transform, self.folder / f"{file_stem(name)}.h5", DATASET,
                fingerprint=fingerprint, batch_size=self.batch_size, device=self.device,
                num_workers=self.num_workers, half=self.half,
                progress=f"frozen features: {name}" if self.progress else False,
            )
        return self._by_fingerprint[fingerprint]

    def load(self, name: str, paths: Sequence[str], query_resize: Optional[int] = None) -> np.ndarray:
        """Like :meth:`descriptors`, read into memory as float32 (N, D)."""
        return np.asarray(self.descriptors(name, paths, query_resize), dtype=np.float32)
