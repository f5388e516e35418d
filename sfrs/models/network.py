"""GeoNet = backbone + aggregation head (+ optional PCA-whitening), self-describing on disk.

A saved model file holds the :class:`~sfrs.config.ModelConfig` that built it, its
weights and its PCA-whitening, so ``sfrs-eval --checkpoint FILE`` needs no other flag.
:func:`load_network` is the one checked way back from a file (a model file or a training
state that nests one) to a network.

Model file layout (``format`` ``sfrs-model``, ``version`` 1)::

    model_config  dict of ModelConfig      state_dict  weights without the PCA
    pca           None or {"mean": (D,), "projection": (D, dim)[, "bias": (dim,)]}
    adapter       absent / None, or an Adapter payload (label-free adaptation, after the PCA)
    ...           metadata added by GeoNet.save(extra=...)

A training state file holds such a payload under ``model``. Keys that ModelConfig gained
later (``frozen_chunk``, ``checkpoint_activations``: how training runs the backbone) take
their defaults when a file predates them. Files hold tensors and plain data only and are
read without unpickling anything else unless trusted (:mod:`sfrs.utils.checkpoint_file`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from sfrs.config import ModelConfig, from_dict, to_dict
from sfrs.errors import CheckpointError, ConfigError
from sfrs.models.adapter import Adapter
from sfrs.models.backbones import build_backbone
from sfrs.models.heads import build_head
from sfrs.models.whitening import PCAWhitening
from sfrs.utils.checkpoint_file import load_checkpoint_file, save_checkpoint_file

CHECKPOINT_FORMAT = "sfrs-model"
CHECKPOINT_VERSION = 1

#: what a head's ``class_token`` attribute may say (absent = ``none``): ``optional`` and
#: ``required`` heads take ``forward(features, class_token=None)`` and
#: ``regions(features, class_token=None)`` with the backbone's (B, C) class token.
HEAD_CLASS_TOKEN_USES = ("none", "optional", "required")


class GeoNet(nn.Module):
    """Global image descriptors for place recognition.

    ``forward(images (B,3,H,W)) -> (B, D)`` L2-normalised (PCA-whitened when a PCA is
    attached, then adapted when an :class:`Adapter` is); ``region_descriptors(images) ->
    (B, 9, D_head)`` in the order of :data:`REGION_NAMES` (SFRS, Ge et al., ECCV 2020),
    region 0 = the head's global descriptor.

    A head that uses a class token (``class_token`` ``optional`` or ``required``) gets
    the backbone's (``backbone.forward_tokens``) when the backbone has one; a
    ``required`` head on a backbone without one is a :class:`ConfigError` at build.
    """

    def __init__(self, config: ModelConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        try:
            self.backbone = build_backbone(
                config.backbone,
                pretrained=config.pretrained if load_pretrained else "none",
                trainable=config.trainable,
                frozen_chunk=config.frozen_chunk,
                checkpoint_activations=config.checkpoint_activations,
                options=config.backbone_options,
            )
            self.head = build_head(config.head, dim=self.backbone.out_channels, **config.head_options)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"model: {exc}") from None
        try:
            self.backbone.check_input_size(config.input_size)
        except ConfigError as exc:
            raise ConfigError(f"model.input_size: {exc}") from None
        uses = getattr(self.head, "class_token", "none")
        if uses not in HEAD_CLASS_TOKEN_USES:
            raise ConfigError(f"head '{config.head}' declares class_token {uses!r}; expected one of "
                              f"{', '.join(HEAD_CLASS_TOKEN_USES)}")
        if uses == "required" and not self.backbone.class_token:
            raise ConfigError(f"head '{config.head}' needs a backbone with a class token, e.g. "
                              f"timm:vit_small_patch14_dinov2 (model.backbone is {config.backbone})")
        #: the head is given the backbone's class token
        self.passes_class_token = uses != "none" and bool(self.backbone.class_token)
        self.pca: Optional[PCAWhitening] = None
        self.adapter: Optional[Adapter] = None

    # -- descriptors -----------------------------------------------------------------
    def forward(self, images: Tensor, regions: bool = False) -> Tensor:
        """(B, D) global descriptors, or with ``regions=True`` the head's (B, 9, D_head)
        region descriptors (training goes through here so that DistributedDataParallel
        sees every forward)."""
        if regions:
            return self.region_descriptors(images)
        if self.passes_class_token:
            feature_map, class_token = self.backbone.forward_tokens(images)
            descriptors = self.head(feature_map, class_token=class_token)
        else:
            descriptors = self.head(self.backbone(images))
        if self.pca is not None:
            descriptors = self.pca(descriptors)
        if self.adapter is not None:
            descriptors = self.adapter(descriptors)
        return descriptors

    def region_descriptors(self, images: Tensor) -> Tensor:
        """(B, 9, D_head): [global, top, bottom, left, right, TL, TR, BL, BR]."""
        if self.passes_class_token:
            feature_map, class_token = self.backbone.forward_tokens(images)
            return self.head.regions(feature_map, class_token=class_token)
        return self.head.regions(self.backbone(images))

    @property
    def head_dim(self) -> int:
        return int(self.head.out_dim)

    @property
    def out_dim(self) -> int:
        if self.adapter is not None:
            return self.adapter.out_dim
        return int(self.pca.projection.shape[1]) if self.pca is not None else self.head_dim

    # -- preprocessing travels with the model ---------------------------------------
    @property
    def input_size(self) -> Tuple[int, int]:
        return tuple(self.config.input_size)  # type: ignore[return-value]

    @property
    def mean(self) -> Tuple[float, float, float]:
        return tuple(self.config.mean or self.backbone.default_mean)  # type: ignore[return-value]

    @property
    def std(self) -> Tuple[float, float, float]:
        return tuple(self.config.std or self.backbone.default_std)  # type: ignore[return-value]

    def transform(self, shorter_side: Optional[int] = None, input_size: Optional[Tuple[int, int]] = None):
        """The evaluation transform this model expects (PIL image -> normalised tensor):
        resized to ``input_size`` (default the model's), or to a shorter side of
        ``shorter_side`` pixels keeping the aspect ratio (queries of some benchmarks; then
        centre-cropped to whole patches for a ViT, :attr:`input_multiple`)."""
        from sfrs.data import build_transform

        return build_transform(input_size or self.input_size, self.mean, self.std, shorter_side=shorter_side,
                               multiple=self.input_multiple if shorter_side is not None else 1)

    @property
    def input_multiple(self) -> int:
        """Input sides must be multiples of this many pixels (a ViT's patch size, else 1)."""
        return int(getattr(self.backbone, "input_multiple", 1))

    def set_training_memory(self, frozen_chunk: int, checkpoint_activations: bool) -> None:
        """How training runs the backbone (``model.frozen_chunk``,
        ``model.checkpoint_activations``): a network loaded from a file takes the current
        run's settings, which then travel in the checkpoints it writes. Descriptors,
        losses and gradients do not depend on them."""
        self.config = dataclasses.replace(self.config, frozen_chunk=frozen_chunk,
                                          checkpoint_activations=checkpoint_activations)
        self.backbone.frozen_chunk = frozen_chunk
        self.backbone.checkpoint_activations = checkpoint_activations

    def set_pca(self, pca: Optional[PCAWhitening]) -> None:
        if pca is not None and self.adapter is not None:
            # the adapter was trained on the descriptors without this PCA
            raise ConfigError("PCA-whitening cannot be added to an adapted model: fit it before adapting")
        self.pca = pca

    def set_adapter(self, adapter: Optional[Adapter]) -> None:
        """Apply ``adapter`` to the (PCA-whitened) descriptors; None removes it."""
        dim = int(self.pca.projection.shape[1]) if self.pca is not None else self.head_dim
        if adapter is not None and adapter.in_dim != dim:
            raise ValueError(f"the adapter takes {adapter.in_dim}-d descriptors but the model gives {dim}-d")
        self.adapter = adapter

    # -- persistence ------------------------------------------------------------------
    def checkpoint_payload(self) -> Dict[str, Any]:
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(("pca.", "adapter."))}
        payload: Dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model_config": to_dict(self.config),
            "state_dict": state,
            "pca": None,
        }
        if self.pca is not None:
            payload["pca"] = {k: v.detach().cpu() for k, v in self.pca.state_dict().items()}
        if self.adapter is not None:
            payload["adapter"] = self.adapter.payload()
        return payload

    def save(self, path: Union[str, Path], extra: Optional[Dict[str, Any]] = None) -> None:
        """Write the model (config, weights, PCA) atomically; ``extra`` adds metadata."""
        payload = self.checkpoint_payload()
        if extra:
            payload.update(extra)
        save_checkpoint_file(payload, path)


def build_network(config: ModelConfig, load_pretrained: bool = True) -> GeoNet:
    """A new :class:`GeoNet` with a random head (NetVLAD centroids come from
    :func:`sfrs.models.init.init_netvlad`)."""
    return GeoNet(config, load_pretrained=load_pretrained)


def load_network(path: Union[str, Path], device: Union[str, torch.device] = "cpu", trust: bool = False) -> GeoNet:
    """The network of a model file (:meth:`GeoNet.save`) or of a training state file
    (``{"model": payload, ...}``), on ``device``. ``trust`` also reads files holding
    pickled objects (older formats), which can run code.

    Raises:
        CheckpointError: a missing, unreadable, untrusted or foreign file, an invalid
            model description, or weights that do not fit it; one line naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    payload = load_checkpoint_file(path, trust)
    return network_from_payload(payload, str(path)).to(device)


def network_from_payload(payload: Any, source: str = "<checkpoint>") -> GeoNet:
    """The network of a model payload already in memory (:meth:`GeoNet.checkpoint_payload`,
    or a training state that nests it under ``model``), on the CPU.

    Checked like :func:`load_network`; ``source`` names the payload in error messages.
    """
    payload = _model_payload(payload, source)
    try:
        config = from_dict(ModelConfig, payload["model_config"], "model")
    except ConfigError as exc:
        raise CheckpointError(f"{source}: invalid model description ({exc})") from None
    model = GeoNet(config, load_pretrained=False)
    missing, unexpected = _compare_keys(model.state_dict(), payload["state_dict"])
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            detail.append(f"unexpected {', '.join(unexpected[:3])}")
        raise CheckpointError(f"{source}: weights do not fit {config.backbone}+{config.head} ({'; '.join(detail)})")
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{source}: weights do not fit the described model ({first})") from None
    if payload.get("pca"):
        pca_state = payload["pca"]
        model.set_pca(PCAWhitening.from_state(pca_state))
    if payload.get("adapter"):
        try:
            model.set_adapter(Adapter.from_payload(payload["adapter"], source))
        except ValueError as exc:
            raise CheckpointError(f"{source}: {exc}") from None
    return model


def _model_payload(payload: Any, source: str) -> Dict[str, Any]:
    """The model payload itself: unwrapped from a training state, refused when foreign."""
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict) and "model_config" in payload["model"]:
        return payload["model"]
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT or "model_config" not in payload:
        raise CheckpointError(f"{source}: not an sfrs checkpoint (no model description inside)")
    return payload


def _compare_keys(expected: Dict[str, Tensor], given: Dict[str, Tensor]):
    expected_keys = {k for k in expected if not k.startswith("pca.")}
    given_keys = set(given)
    return sorted(expected_keys - given_keys), sorted(given_keys - expected_keys)
