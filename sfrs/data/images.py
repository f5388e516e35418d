"""Image decoding with errors that name the file; evaluation transforms built from the model's
preprocessing (input size, mean, std travel with the model, not with the data set)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T

from sfrs.errors import DataError

PathLike = Union[str, Path]

def load_image(path: PathLike) -> Image.Image:
    """Decode an image file fully and return it as RGB.

    Raises:
        DataError: ``"<path>: cannot read image (<reason>)"`` for missing, unreadable,
            truncated or corrupt files.
    """
    try:
        with Image.open(path) as image:
            # convert() decodes every pixel, so truncated files fail here and not later.
            return image.convert("RGB")
    except UnidentifiedImageError:
        reason = "not a recognised image format"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    reason = " ".join(reason.split()) or "unknown error"
    raise DataError(f"{path}: cannot read image ({reason})")


class CropToMultiple:
    """Centre-crop a PIL image so that both sides are multiples of ``multiple`` pixels
    (a ViT sees whole patches only; at most ``multiple - 1`` pixels go per side)."""

    def __init__(self, multiple: int) -> None:
        self.multiple = int(multiple)

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        new_w, new_h = width - width % self.multiple, height - height % self.multiple
        if new_w <= 0 or new_h <= 0:
            raise DataError(f"image of {width}x{height} pixels is smaller than one {self.multiple}-pixel patch")
        if (new_w, new_h) == (width, height):
            return image
        left, top = (width - new_w) // 2, (height - new_h) // 2
        return image.crop((left, top, left + new_w, top + new_h))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(multiple={self.multiple})"


def build_transform(
    input_size: Optional[Tuple[int, int]],
    mean: Sequence[float],
    std: Sequence[float],
    shorter_side: Optional[int] = None,
    multiple: int = 1,
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> float tensor (3, H, W) normalised with ``mean`` / ``std``.

    Args:
        input_size: (H, W) every image is resized to, or None to keep each image's size.
        mean, std: 3 per-channel values (the model's preprocessing).
        shorter_side: instead of ``input_size``, keep the aspect ratio and resize the
            shorter side to this many pixels (Tokyo 24/7 queries: 640; images of a batch
            may then differ in size).
        multiple: after resizing, centre-crop both sides down to a multiple of this many
            pixels (:class:`CropToMultiple`; a ViT's patch size; 1 = no crop).
    Returns:
        A torchvision ``Compose`` (its repr describes the transform, e.g. for cache keys).
    """
    if shorter_side is not None and (isinstance(shorter_side, bool) or not isinstance(shorter_side, int)
                                     or shorter_side <= 0):
        raise ValueError(f"shorter_side must be None or a positive pixel count, got {shorter_side!r}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got {list(mean)} and {list(std)}")
    steps = []
    if shorter_side is not None:
        steps.append(T.Resize(shorter_side, interpolation=T.InterpolationMode.BILINEAR, antialias=True))
    elif input_size is not None:
        height, width = (int(v) for v in input_size)
        if height <= 0 or width <= 0:
            raise ValueError(f"input_size must be positive (H, W), got {tuple(input_size)}")
        steps.append(T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR, antialias=True))
    if multiple > 1:
        steps.append(CropToMultiple(multiple))
    steps += [T.ToTensor(), T.Normalize(mean=[float(m) for m in mean], std=[float(s) for s in std])]
    return T.Compose(steps)


class ImageListDataset(Dataset):
    """Images of a list of paths: item ``i`` is ``(transform(image_i) (3, H, W), i)``.

    Holds no state besides the paths, so it is safe in DataLoader worker processes.
    """

    def __init__(self, paths: Sequence[PathLike], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = [str(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        return self.transform(load_image(self.paths[index])), index


_WRAPPED_LAST_LINE = re.compile(r"^\s*[A-Za-z_][\w.]*: (.*)$")


def unwrap_worker_error(exc: BaseException) -> str:
    """The original one-line message of an error re-raised by a DataLoader worker.

    A worker error reaches the main process as ``"Caught DataError in DataLoader worker
    process 0.\\nOriginal Traceback ...\\nsfrs.errors.DataError: <message>"``; this returns
    ``<message>``. Any other exception gives ``str(exc)``.
    """
    text = str(exc)
    if "Original Traceback" not in text and "DataLoader worker" not in text:
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return text
    match = _WRAPPED_LAST_LINE.match(lines[-1])
    return match.group(1) if match else lines[-1].strip()
