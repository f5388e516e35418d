"""Data-driven initialisation of a new network: NetVLAD centroids by k-means (NetVLAD, §3)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from sfrs.data.images import ImageListDataset
from sfrs.models.init import init_netvlad
from sfrs.models.network import GeoNet


def initialise_network(
    model: GeoNet,
    image_paths: Sequence[str],
    *,
    num_images: int,
    descriptors_per_image: int,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
) -> Optional[float]:
    """Initialise the head from ``num_images`` random images; returns NetVLAD's alpha.

    Heads without a data-driven initialisation (GeM) are left as built and ``None`` is
    returned.
    """
    if not hasattr(model.head, "init_from_descriptors"):
        return None
    rng = np.random.default_rng(seed)
    count = min(num_images, len(image_paths))
    chosen = sorted(rng.choice(len(image_paths), size=count, replace=False).tolist())
    dataset = ImageListDataset([image_paths[i] for i in chosen], model.transform())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    images = (batch.to(device) for batch, _ in loader)
    return init_netvlad(
        model.head, model.backbone, images, num_per_image=descriptors_per_image,
        max_images=count, seed=seed,
    )
