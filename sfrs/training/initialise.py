"""A generation's student: fresh weights with NetVLAD centroids by k-means on training
images (NetVLAD, §3), computed once per run and cached, or the teacher's weights."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from sfrs import distributed
from sfrs.config import GenerationConfig, to_dict
from sfrs.data import ImageListDataset
from sfrs.errors import ConfigError
from sfrs.models import GeoNet, build_network, init_netvlad, load_network
from sfrs.utils.hashing import fingerprint


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


def student_for(run, generation: int, schedule: GenerationConfig) -> GeoNet:
    """The student at the start of ``generation``: re-initialised (reference) or, with
    ``student_init: continue``, the previous generation's final model."""
    if schedule.student_init == "continue" and generation > 0:
        run.log(f"generation {generation}: student continues from generation {generation - 1}")
        return load_network(run.paths.generation_final(generation - 1), run.device, run.trust_checkpoint)
    return initial_network(run)


def initial_network(run) -> GeoNet:
    """Fresh weights + NetVLAD k-means, made once per run and cached; read back from the
    file so that a fresh run and a resumed one start from bit-identical weights. With
    ``train.init_from``, that model's weights instead (same architecture required)."""
    cfg = run.config
    if cfg.train.init_from:
        return _from_model_file(cfg.train.init_from, cfg.model, run.device, run.trust_checkpoint)
    key = fingerprint(model=to_dict(cfg.model), seed=cfg.seed, data=run.data_fingerprint)
    path = run.paths.cache / f"init_{key}.pt"
    if not path.exists() and distributed.is_main():
        torch.manual_seed(cfg.seed)
        model = build_network(cfg.model).to(run.device)
        alpha = initialise_network(
            model, list(run.train_split.database_paths), num_images=cfg.model.init_images,
            descriptors_per_image=cfg.model.init_descriptors_per_image, seed=cfg.seed,
            device=run.device, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
        )
        if alpha is not None:
            run.log(f"NetVLAD initialised by k-means on {min(cfg.model.init_images, run.train_split.num_database)} "
                    f"training images (alpha {alpha:.1f}); cached in {path}")
        model.save(path)
    distributed.barrier()
    return load_network(path, run.device, run.trust_checkpoint)


#: model settings that must agree for a model file's weights to initialise a student.
_ARCHITECTURE_KEYS = ("backbone", "backbone_options", "head", "head_options", "input_size")


def _from_model_file(path: str, model_config, device, trust: bool) -> GeoNet:
    network = load_network(path, device, trust)
    given, wanted = to_dict(network.config), to_dict(model_config)
    different = [key for key in _ARCHITECTURE_KEYS if given[key] != wanted[key]]
    if different:
        key = different[0]
        raise ConfigError(f"train.init_from {path}: its model.{key} is {given[key]!r}, the config's is "
                          f"{wanted[key]!r}; set the config's model to the file's architecture")
    network.set_pca(None)  # training works on the head's output; PCA is fitted after training
    return network
