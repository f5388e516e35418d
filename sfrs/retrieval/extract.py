"""Batched descriptor extraction over image lists, in memory or streamed into HDF5."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sfrs.data import ImageListDataset, unwrap_worker_error
from sfrs.errors import DataError

Batch = Tuple[Union[Tensor, List[Tensor]], Tensor]


def _collate(items: Sequence[Tuple[Tensor, int]]) -> Batch:
    """Stack equally sized images; keep a list when sizes differ (aspect-preserving resize)."""
    images = [image for image, _ in items]
    indices = torch.as_tensor([index for _, index in items], dtype=torch.int64)
    if all(image.shape == images[0].shape for image in images):
        return torch.stack(images), indices
    return images, indices


def _batches(loader: DataLoader) -> Iterator[Batch]:
    """Iterate ``loader``, turning a DataError re-raised by a worker back into its one line."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except DataError as exc:
            raise DataError(unwrap_worker_error(exc)) from None
        yield batch


def _describe(
    model: Callable[[Tensor], Tensor], images: Union[Tensor, List[Tensor]], device: torch.device
) -> np.ndarray:
    """(B, D) float32 descriptors of one batch; lists are run in groups of equal image size."""
    if isinstance(images, Tensor):
        output = model(images.to(device, non_blocking=True))
        count = images.shape[0]
        if not isinstance(output, Tensor) or output.ndim != 2 or output.shape[0] != count:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(f"model must return descriptors of shape (B, D) = ({count}, D), got {shape}")
        return output.detach().float().cpu().numpy()
    groups: Dict[Any, List[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(i)
    result: Optional[np.ndarray] = None
    for members in groups.values():
        part = _describe(model, torch.stack([images[i] for i in members]), device)
        if result is None:
            result = np.empty((len(images), part.shape[1]), dtype=np.float32)
        result[members] = part
    assert result is not None
    return result


def extract_descriptors(
    model: Callable[[Tensor], Tensor],
    paths: Sequence[str],
    transform: Callable,
    batch_size: int = 32,
    device: Union[str, torch.device] = "cpu",
    num_workers: int = 0,
    progress: Union[bool, str] = True,
    out: Optional[Any] = None,
):
    """Descriptors of ``paths``, rows in file order.

    Args:
        model: images (B, 3, H, W) -> descriptors (B, D), already on ``device``. An
            ``nn.Module`` is switched to eval mode for the pass and restored afterwards.
        paths: N image files.
        transform: PIL image -> (3, H, W) tensor (e.g. :func:`sfrs.data.images.build_transform`).
            Images of different sizes in a batch are run in groups of equal size.
        batch_size, num_workers: DataLoader settings.
        device: where the batches are sent.
        progress: show a tqdm bar; a string is used as its description.
        out: optional writable (N, D) array-like (an ``h5py.Dataset``): each batch is written
            into it as it is computed and ``out`` is returned, so N x D never sits in memory.
    Returns:
        (N, D) float32 ``np.ndarray``, or ``out``.
    Raises:
        DataError: an image cannot be read (one line naming it, also from worker processes).
        ValueError: no paths, a model output that is not (B, D), or ``out`` of the wrong shape.
    """
    paths = [str(p) for p in paths]
    num = len(paths)
    if num == 0:
        raise ValueError("no images to extract descriptors from")
    if out is not None and (len(out.shape) != 2 or out.shape[0] != num):
        raise ValueError(f"out must have shape ({num}, D), got {tuple(out.shape)}")
    device = torch.device(device)
    loader = DataLoader(
        ImageListDataset(paths, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    result = out
    module = model if isinstance(model, nn.Module) else None
    was_training = module.training if module is not None else False
    bar = tqdm(
        total=num, desc=progress if isinstance(progress, str) else "descriptors",
        unit="img", disable=not progress, dynamic_ncols=True,
    )
    try:
        if module is not None:
            module.eval()  # BatchNorm/Dropout in train mode would make descriptors batch dependent
        with torch.inference_mode():
            for images, indices in _batches(loader):
                descriptors = _describe(model, images, device)
                if result is None:
                    result = np.empty((num, descriptors.shape[1]), dtype=np.float32)
                elif descriptors.shape[1] != result.shape[1]:
                    raise ValueError(
                        f"model returned {descriptors.shape[1]}-d descriptors but out has {result.shape[1]} columns"
                    )
                start = int(indices[0])
                # shuffle=False gives consecutive indices: a slice write suits HDF5 best.
                result[start:start + len(indices)] = descriptors
                bar.update(len(indices))
    finally:
        bar.close()
        if module is not None:
            module.train(was_training)
    return result


def extract_descriptors_sharded(
    model: Callable[[Tensor], Tensor],
    paths: Sequence[str],
    transform: Callable,
    batch_size: int = 32,
    device: Union[str, torch.device] = "cpu",
    num_workers: int = 0,
    progress: Union[bool, str] = True,
) -> np.ndarray:
    """:func:`extract_descriptors` where each process of a torchrun job encodes its
    contiguous shard of ``paths`` and every process receives all (N, D) rows in order.

    Without torchrun it is exactly :func:`extract_descriptors`. A process with an empty
    shard (more processes than images) contributes no rows.
    """
    from sfrs import distributed

    paths = list(paths)
    if distributed.world_size() == 1:
        return np.asarray(extract_descriptors(model, paths, transform, batch_size, device, num_workers, progress))
    mine = distributed.shard(len(paths))
    local = None
    if len(mine):
        local = np.asarray(extract_descriptors(
            model, paths[mine.start : mine.stop], transform, batch_size, device, num_workers, progress
        ))
    # a process without images learns the descriptor width from the others
    dim = int(distributed.all_reduce_max(float(local.shape[1] if local is not None else 0)))
    if local is None:
        local = np.zeros((0, dim), dtype=np.float32)
    return distributed.all_gather_rows(local, len(paths))
