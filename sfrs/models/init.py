"""Data-driven initialisation of heads: NetVLAD centroids from k-means on local descriptors.

The SFRS / NetVLAD recipe: 100 random locations from each of 500 random training images
(~50,000 L2-normalised local descriptors), k-means with K = 64, then
``NetVLAD.init_from_descriptors``. Choosing *which* images is the caller's job (pass a
loader over a seeded random subset of the training images); this module takes the first
``max_images`` images it is given.
"""
from __future__ import annotations

from typing import Iterable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sfrs.models.heads import NetVLAD

ImageBatch = Union[torch.Tensor, Sequence]


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def sample_local_descriptors(
    backbone: nn.Module,
    images: Iterable[ImageBatch],
    num_per_image: int = 100,
    max_images: int = 500,
    seed: int = 0,
) -> np.ndarray:
    """Sample L2-normalised local descriptors from backbone feature maps.

    Args:
        backbone: module mapping (B, 3, H, W) -> (B, C, h, w).
        images: iterable of image batches, tensors of shape (B, 3, H, W) (or tuples /
            lists whose first element is such a tensor, as a DataLoader yields them).
        num_per_image: locations drawn per image, without replacement; all h*w locations
            when the map has fewer.
        max_images: stop after this many images.
        seed: seed of the location sampler (numpy ``default_rng``).

    Returns:
        float32 array of shape (N, C), rows L2-normalised, N = images used x locations.

    Runs under ``torch.no_grad()`` with the backbone in eval mode; each submodule's
    previous train/eval mode is restored afterwards.
    """
    if num_per_image < 1 or max_images < 1:
        raise ValueError(f"num_per_image and max_images must be >= 1, got {num_per_image}, {max_images}")
    rng = np.random.default_rng(seed)
    device = _module_device(backbone)
    modes = {module: module.training for module in backbone.modules()}
    chunks = []
    used = 0
    backbone.eval()
    try:
        with torch.no_grad():
            for batch in images:
                if used >= max_images:
                    break
                if isinstance(batch, (tuple, list)):
                    batch = batch[0]
                batch = batch[: max_images - used].to(device)
                features = F.normalize(backbone(batch), p=2, dim=1)  # (B, C, h, w)
                local = features.flatten(2).transpose(1, 2).float().cpu().numpy()  # (B, h*w, C)
                locations = local.shape[1]
                take = min(num_per_image, locations)
                for descriptors in local:
                    chunks.append(descriptors[rng.choice(locations, size=take, replace=False)])
                used += local.shape[0]
    finally:
        for module, mode in modes.items():
            module.training = mode
    if not chunks:
        raise ValueError("sample_local_descriptors: no images were given")
    return np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)


def init_netvlad(
    head: NetVLAD,
    backbone: nn.Module,
    images: Iterable[ImageBatch],
    num_per_image: int = 100,
    max_images: int = 500,
    seed: int = 0,
    **kmeans_options,
) -> float:
    """Initialise ``head`` from k-means on descriptors sampled by :func:`sample_local_descriptors`.

    ``seed`` seeds both the location sampler and k-means; ``kmeans_options`` (e.g.
    ``niter``) go to :meth:`NetVLAD.init_from_descriptors`. Returns alpha.
    """
    descriptors = sample_local_descriptors(
        backbone, images, num_per_image=num_per_image, max_images=max_images, seed=seed
    )
    return head.init_from_descriptors(descriptors, seed=seed, **kmeans_options)
