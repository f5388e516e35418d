"""Test-time methods: query views, the merge of their searches, image sizes, re-ranking,
mixed precision.

Query views (Berton et al., "Deep Visual Geo-localization Benchmark", CVPR 2022, its
``test.py`` and ``datasets_ws.py``; the database is always described whole, ``single``):

- ``single``: the query as the database is resized (or with the protocol's query resize).
- ``central_crop``: the query resized, aspect kept, to the smallest size covering the
  test input size (H, W), then its central H x W crop (the benchmark's "biggest central
  crop of size resize"; a square only when the input size is square).
- ``five_crops``: the query resized to a shorter side s = min(H, W), aspect kept, and its
  five s x s crops (four corners, centre); its descriptor is the mean of the five crop
  descriptors, not re-normalised (as the benchmark; the ranking by squared L2 is the
  same either way, the distances are those of the mean).
- ``nearest_crop``: the same five crops, each searched on its own; the lists are merged by
  distance, each database image kept once at its nearest distance (:func:`merge_nearest`).
  Merging each crop's top-k gives exactly the k database images nearest to any crop.
- ``maj_voting``: the same five searches, each crop's list reaching at least 10 deep;
  votes lower distances before the merge (:func:`majority_votes`, the benchmark's
  ``top_n_voting`` applied with top1, top5 and top10, weight 0.01).

Equal distances in a merge keep crop order, then rank (the benchmark sorts with an
unstable ``np.argsort``, which leaves that order undefined).

Image sizes: ``image_size`` (H, W) replaces the model's input size for database and
queries; ``shorter_side`` N resizes them keeping the aspect ratio instead (crop methods
then crop N x N squares). The protocol's query resize (Tokyo 24/7: 640) still sets the
queries' shorter side with ``single``; the crop methods resize queries themselves, so a
query resize from the conventions is replaced by the method (and said in the report),
and one given explicitly is refused.

Re-ranking: k-reciprocal re-ranking (:mod:`sfrs.retrieval.rerank`) of each query's top
``top`` database images, over the joint set queries + database (held in memory for it).

Precision: ``bf16``/``fp16`` run the network under autocast (:mod:`sfrs.utils.precision`);
descriptors are converted to float32 and L2-normalised again in float32.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor, nn

from sfrs.errors import ConfigError
from sfrs.retrieval.rerank import DISTANCES
from sfrs.retrieval.view_search import MAJORITY_WEIGHT, MERGED_METHODS
from sfrs.utils.precision import autocast, check_precision

#: test method -> descriptors per query image.
TEST_METHODS = {"single": 1, "central_crop": 1, "five_crops": 5, "nearest_crop": 5, "maj_voting": 5}
#: methods that resize and crop queries themselves.
CROP_METHODS = ("central_crop", "five_crops", "nearest_crop", "maj_voting")


@dataclass(frozen=True)
class RerankSettings:
    """k-reciprocal re-ranking at test time; defaults are those of training's mining
    (``mining.rerank_k1/k2/lambda/distance``, SFRS)."""

    top: int = 100
    k1: int = 20
    k2: int = 1
    lam: float = 0.1
    distance: str = "reference"

    def __post_init__(self) -> None:
        if isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 1:
            raise ConfigError(f"--rerank-top must be a positive integer, got {self.top!r}")
        if isinstance(self.k1, bool) or not isinstance(self.k1, int) or self.k1 < 1:
            raise ConfigError(f"--rerank-k1 must be a positive integer, got {self.k1!r}")
        if isinstance(self.k2, bool) or not isinstance(self.k2, int) or not 1 <= self.k2 <= self.k1 + 1:
            raise ConfigError(f"--rerank-k2 must be an integer in [1, k1 + 1 = {self.k1 + 1}], got {self.k2!r}")
        if not 0.0 <= float(self.lam) <= 1.0:
            raise ConfigError(f"--rerank-lambda must lie in [0, 1], got {self.lam!r}")
        if self.distance not in DISTANCES:
            raise ConfigError(f"re-ranking distance must be one of {', '.join(DISTANCES)}, got '{self.distance}'")

    def to_json(self) -> Dict[str, Any]:
        return {"top": self.top, "k1": self.k1, "k2": self.k2, "lambda": float(self.lam), "distance": self.distance}


@dataclass(frozen=True)
class TestTime:
    """How queries and database images are turned into descriptors and how the searches
    are combined (see the module docstring).

    Attributes:
        method: one of :data:`TEST_METHODS`.
        image_size: (H, W) test input size; None = the model's input size.
        shorter_side: resize to this shorter side, aspect kept, instead of a fixed size.
        majority_weight: vote weight of ``maj_voting``.
        rerank: re-ranking settings, None = no re-ranking.
        precision: ``fp32``, ``bf16`` or ``fp16`` (:mod:`sfrs.utils.precision`).
        channels_last: run the network on channels-last tensors.
    """

    __test__ = False  # not a pytest class, despite its name

    method: str = "single"
    image_size: Optional[Tuple[int, int]] = None
    shorter_side: Optional[int] = None
    majority_weight: float = MAJORITY_WEIGHT
    rerank: Optional[RerankSettings] = None
    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.method not in TEST_METHODS:
            raise ConfigError(f"--test-method must be one of {', '.join(TEST_METHODS)}, got '{self.method}'")
        if self.image_size is not None and self.shorter_side is not None:
            raise ConfigError("--image-size and --resize cannot be used together (a fixed size or a shorter side)")
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size):
                raise ConfigError(f"--image-size must be two positive integers H,W, got {self.image_size!r}")
            object.__setattr__(self, "image_size", size)
        if self.shorter_side is not None and (isinstance(self.shorter_side, bool) or self.shorter_side < 1):
            raise ConfigError(f"--resize shorter_side:N needs a positive N, got {self.shorter_side!r}")
        if not self.majority_weight >= 0:
            raise ConfigError(f"majority weight must be >= 0, got {self.majority_weight!r}")
        check_precision(self.precision, "--precision")
        if self.rerank is not None and self.method in MERGED_METHODS:
            raise ConfigError(f"--rerank needs one descriptor per query; --test-method {self.method} has "
                              f"{TEST_METHODS[self.method]} (use single, central_crop or five_crops)")

    @property
    def views(self) -> int:
        """Descriptors stored per query (1, or 5 for the merged methods)."""
        return TEST_METHODS[self.method] if self.method in MERGED_METHODS else 1

    @property
    def images_per_query(self) -> int:
        """Images the network sees per query (5 crops, or 1)."""
        return TEST_METHODS[self.method]

    def database_transform(self, model: Any) -> Any:
        """PIL image -> (3, H, W): database images (and ``single`` queries without a query resize)."""
        return model.transform(shorter_side=self.shorter_side, input_size=self.image_size)

    def query_transform(self, model: Any, query_resize: Optional[int]) -> Any:
        """PIL image -> (3, H, W), or (5, 3, s, s) for the five-crop methods.

        ``query_resize``: the protocol's shorter side for queries (None = like the
        database); it applies to ``single`` only (see :func:`resolve_query_resize`)."""
        if self.method == "single":
            if query_resize is None:
                return self.database_transform(model)
            return model.transform(shorter_side=query_resize)
        height, width = self.crop_size(model)
        if self.method == "central_crop":
            return CentralCrop((height, width), model.mean, model.std)
        return FiveSquareCrops(min(height, width), model.mean, model.std)

    def crop_size(self, model: Any) -> Tuple[int, int]:
        """(H, W) the crop methods work with: the test input size, or N x N with a shorter side N."""
        if self.shorter_side is not None:
            return self.shorter_side, self.shorter_side
        height, width = self.image_size or model.input_size
        return int(height), int(width)

    def describe_images(self, model: Any, query_resize: Optional[int]) -> Tuple[str, str]:
        """(database images, query images) in words, for the report's protocol."""
        if self.shorter_side is not None:
            database = f"shorter side {self.shorter_side} px, aspect kept"
        else:
            height, width = self.image_size or model.input_size
            database = f"resized to {height}x{width}" + (" (model input size)" if self.image_size is None else "")
        height, width = self.crop_size(model)
        side = min(height, width)
        queries = {
            "single": f"shorter side {query_resize} px, aspect kept" if query_resize is not None
            else "like the database",
            "central_crop": f"resized to cover {height}x{width}, aspect kept, central {height}x{width} crop",
            "five_crops": f"shorter side {side} px, five {side}x{side} crops (corners, centre), mean descriptor",
            "nearest_crop": f"shorter side {side} px, five {side}x{side} crops, merged by nearest distance",
            "maj_voting": f"shorter side {side} px, five {side}x{side} crops, majority voting "
                          f"(weight {self.majority_weight:g})",
        }[self.method]
        return database, queries

    def encoder(self, model: nn.Module, query: bool) -> nn.Module:
        """The module extraction runs: ``model`` itself when nothing differs from plain
        fp32 single-view extraction, else a :class:`ViewEncoder` around it."""
        combine = None
        if query and self.method == "five_crops":
            combine = "mean"
        elif query and self.method in MERGED_METHODS:
            combine = "stack"
        if combine is None and self.precision == "fp32" and not self.channels_last:
            return model
        return ViewEncoder(model, combine=combine, precision=self.precision, channels_last=self.channels_last)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "test_method": self.method,
            "image_size": list(self.image_size) if self.image_size is not None else None,
            "resize": f"shorter_side:{self.shorter_side}" if self.shorter_side is not None else None,
            "rerank": self.rerank.to_json() if self.rerank is not None else None,
            "precision": self.precision,
            "channels_last": self.channels_last,
        }
        if self.method == "maj_voting":
            out["majority_weight"] = self.majority_weight
        return out


def parse_image_size(text: str) -> Tuple[int, int]:
    """``"480,640"`` -> (480, 640); ConfigError otherwise."""
    parts = [part.strip() for part in text.replace("x", ",").split(",")]
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ConfigError(f"--image-size must be H,W (two positive integers), got '{text}'")
    return size  # type: ignore[return-value]


def parse_resize(text: str) -> int:
    """``"shorter_side:480"`` -> 480; ConfigError otherwise."""
    kind, _, value = text.partition(":")
    try:
        side = int(value)
    except ValueError:
        side = 0
    if kind.strip() != "shorter_side" or side < 1:
        raise ConfigError(f"--resize must be shorter_side:N with N a positive integer, got '{text}'")
    return side


# -- query views --------------------------------------------------------------------------------


class CentralCrop:
    """PIL image -> (3, H, W): resized (bilinear, aspect kept) to the smallest size covering
    (H, W), then the central H x W crop, normalised."""

    def __init__(self, size: Tuple[int, int], mean: Any, std: Any) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.normalise = T.Compose([T.ToTensor(), T.Normalize([float(m) for m in mean], [float(s) for s in std])])

    def __call__(self, image: Image.Image) -> Tensor:
        height, width = self.size
        scale = max(height / image.height, width / image.width)
        covering = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        resized = image.resize(covering, Image.BILINEAR)
        return self.normalise(TF.center_crop(resized, [height, width]))

    def __repr__(self) -> str:
        return f"CentralCrop(size={self.size}, {self.normalise!r})"


class FiveSquareCrops:
    """PIL image -> (5, 3, s, s): resized (bilinear, aspect kept) to a shorter side of s,
    then its top-left, top-right, bottom-left, bottom-right and centre s x s crops
    (torchvision's ``five_crop`` order), normalised."""

    def __init__(self, side: int, mean: Any, std: Any) -> None:
        self.side = int(side)
        self.normalise = T.Compose([T.ToTensor(), T.Normalize([float(m) for m in mean], [float(s) for s in std])])

    def __call__(self, image: Image.Image) -> Tensor:
        resized = TF.resize(image, self.side, interpolation=T.InterpolationMode.BILINEAR, antialias=True)
        return torch.stack([self.normalise(crop) for crop in TF.five_crop(resized, [self.side, self.side])])

    def __repr__(self) -> str:
        return f"FiveSquareCrops(side={self.side}, {self.normalise!r})"


class ViewEncoder(nn.Module):
    """Runs ``model`` on (B, 3, H, W) or (B, K, 3, H, W) images at a precision.

    Output (B, D) per image; with K views: the mean of the K descriptors
    (``combine="mean"``, (B, D)) or all of them side by side (``"stack"``, (B, K*D)).
    Under bf16/fp16 each descriptor is converted to float32 and L2-normalised again.
    """

    def __init__(self, model: nn.Module, combine: Optional[str] = None, precision: str = "fp32",
                 channels_last: bool = False, views: int = 5) -> None:
        super().__init__()
        if combine not in (None, "mean", "stack"):
            raise ValueError(f"combine must be None, 'mean' or 'stack', got {combine!r}")
        self.model = model
        self.combine = combine
        self.precision = check_precision(precision)
        self.channels_last = channels_last
        self.views = views

    @property
    def out_dim(self) -> int:
        return int(self.model.out_dim) * (self.views if self.combine == "stack" else 1)

    def describe(self) -> str:
        """What changes the descriptors besides weights and transform (part of cache keys)."""
        return f"views={self.combine} precision={self.precision} channels_last={self.channels_last}"

    def forward(self, images: Tensor) -> Tensor:
        batch = images.shape[0]
        flat = images.flatten(0, 1) if images.ndim == 5 else images
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        with autocast(flat.device, self.precision):
            out = self.model(flat)
        out = out.float()
        if self.precision != "fp32":
            out = F.normalize(out, dim=1)
        if images.ndim == 4:
            return out
        out = out.reshape(batch, images.shape[1], out.shape[1])
        return out.mean(dim=1) if self.combine == "mean" else out.reshape(batch, -1)


def with_test_time(protocol: Any, test_time: TestTime) -> Any:
    """``protocol`` (:class:`~sfrs.retrieval.protocol.EvalProtocol`) with the query resize a
    crop method replaces: from the conventions it is dropped with a note; given explicitly
    it is refused (two different query transforms asked for)."""
    from sfrs.retrieval.protocol import USER_OVERRIDE

    if test_time.method not in CROP_METHODS or protocol.query_resize is None:
        return protocol
    if protocol.source("query_resize") == USER_OVERRIDE:
        raise ConfigError(f"--query-resize {protocol.query_resize} and --test-method {test_time.method} both set "
                          "how queries are resized; give one")
    sources: List[Tuple[str, str]] = [
        (key, f"replaced by test method {test_time.method}" if key == "query_resize" else source)
        for key, source in protocol.sources
    ]
    note = (f"query resize {protocol.query_resize} of the {protocol.source('query_resize')} replaced by "
            f"test method {test_time.method}")
    return dataclasses.replace(protocol, query_resize=None, sources=tuple(sources), notes=protocol.notes + (note,))
