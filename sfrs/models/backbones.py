"""Backbones: images (B, 3, H, W) -> local feature maps (B, C, h, w).

Every backbone built by :func:`build_backbone` has the same contract:

- ``forward(images)`` takes a float tensor of shape (B, 3, H, W), normalised with the
  backbone's own ``default_mean`` / ``default_std`` (RGB, values in [0, 1] before
  normalisation), and returns a tensor of shape (B, ``out_channels``, h, w);
- ``name`` (the catalogue name), ``out_channels`` (C) and ``stride`` (H / h) attributes;
- ``class_token``: False here; a backbone with a global token (the timm vision
  transformers) sets it True and also has ``forward_tokens(images)`` -> (map
  (B, C, h, w), class token (B, C)).

This module is the torchvision catalogue below; ``timm:<model name>`` builds a timm
model instead (:mod:`sfrs.models.timm_backbone`, cut where ``options`` say).

Catalogue (SFRS, Ge et al., ECCV 2020, uses ``vgg16``):

- ``vgg16``: torchvision VGG16 ``features`` cut at conv5_3 *before* its ReLU and pool5
  (512 channels, stride 16: 480x640 -> 30x40), as in NetVLAD (Arandjelovic et al.,
  CVPR 2016). Trains conv5_1..conv5_3 by default.
- ``resnet18_conv4`` / ``resnet50_conv4``: torchvision ResNet cut after ``layer3``
  (256 / 1024 channels, stride 16). Train ``layer3`` by default.
- ``resnet18_conv5`` / ``resnet50_conv5``: cut after ``layer4`` (512 / 2048 channels,
  stride 32). Train ``layer4`` by default.
- ``small``: a BatchNorm-free 5-convolution network (GroupNorm, 128 channels, stride 8:
  96x128 -> 12x16) for the synthetic city on CPU. Like ``vgg16`` its last convolution
  has no activation. Trains everything by default. It uses the ImageNet mean/std too, so
  that every backbone in the catalogue expects the same input normalisation.

Parameter names follow torchvision (``features.28.weight``, ``layer3.0.conv1.weight``), so
a torchvision full-model state dict (e.g. ``vgg16-397923af.pth``) and a state dict of the
truncated backbone load through the same strict path.

BatchNorm layers whose parameters are all frozen are kept in eval mode (running
statistics fixed) whenever the backbone is put in train mode: frozen stages stay exactly
as loaded.

Every backbone is also a chain of blocks, :meth:`Backbone.stages` (VGG16: its five
pooling blocks; ResNets: the stem, then each residual block; ``small``: each
convolution with its normalisation and ReLU). With gradients enabled (training), the
leading blocks with nothing to train (no parameter with ``requires_grad``, no layer
whose output depends on the rest of the batch: batch norm using batch statistics,
dropout) run under ``torch.no_grad()`` in chunks of ``frozen_chunk`` images: nothing of
them is needed for the backward pass, and their activations are the largest of the
network (VGG16 conv1 at 480x640: 75 MB per image). The output, and so every loss and
gradient, is the one of the whole batch at once up to floating-point rounding. With
``checkpoint_activations`` the trainable blocks are recomputed in the backward pass
(:mod:`sfrs.models.backbone_chain`). Without gradients the blocks run in turn on the
whole batch. ``trainable: last:N`` trains the last N blocks of the chain.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

from sfrs.errors import CheckpointError, ConfigError
from sfrs.models.backbone_chain import checkpointed, frozen_prefix, run_chain, run_chain_measuring
from sfrs.models.weights import fetch_imagenet_state_dict, load_backbone_state_dict, read_state_dict

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

PRETRAINED_MODES = ("imagenet", "none")  # anything else is a path to a local state dict
TRAINABLE_MODES = ("default", "all", "none")  # and "last:N"
#: ``model.backbone: timm:<model name>`` builds a timm model (:mod:`sfrs.models.timm_backbone`).
TIMM_PREFIX = "timm:"


#: ``frozen_chunk: 0``: as many images per chunk of the frozen blocks as keep their
#: largest single activation (measured on the batch's first image) within this many
#: bytes: one 480x640 image through VGG16 (conv1: 75 MB), 40 images of 96x128.
FROZEN_CHUNK_BYTES = 128 * 2**20


class Backbone(nn.Module):
    """Base class: the attributes of the backbone contract and trainability handling.

    Attributes:
        name: catalogue name, e.g. ``vgg16``.
        out_channels: number of channels C of the output map.
        stride: input pixels per output location along each axis.
        default_mean / default_std: per-channel RGB normalisation the weights expect.
        class_token: whether :meth:`forward_tokens` also gives a global (class) token.
        trainable: the mode last applied by :meth:`set_trainable`.
    """

    name: str = ""
    out_channels: int = 0
    stride: int = 1
    default_mean: Tuple[float, float, float] = IMAGENET_MEAN
    default_std: Tuple[float, float, float] = IMAGENET_STD
    class_token: bool = False
    #: input sides must be multiples of this (a ViT's patch size): images resized by a
    #: shorter side are centre-cropped to it.
    input_multiple: int = 1
    # Parameter-name prefixes trained by trainable="default" ("" = everything) ...
    default_trainable_prefixes: Tuple[str, ...] = ("",)
    # ... unless trainable="default" means "last:N" for this N.
    default_last: Optional[int] = None

    def __init__(self) -> None:
        super().__init__()
        self.trainable = "all"
        #: images per chunk through the frozen blocks during training (0 = sized from the
        #: input, see :data:`FROZEN_CHUNK_BYTES`).
        self.frozen_chunk = 0
        #: recompute the trainable blocks' activations in the backward pass.
        self.checkpoint_activations = False

    def stages(self) -> List[nn.Module]:
        """The backbone as a chain of blocks: ``forward(x) = stages[-1](...stages[0](x))``.

        A block is the unit of the frozen / trainable split and of activation
        checkpointing; a block never starts with an in-place layer (a checkpointed block
        must not modify the input it saved).
        """
        raise NotImplementedError

    def trainable_units(self) -> List[nn.Module]:
        """The units ``trainable: last:N`` counts from the end: the blocks of :meth:`stages`."""
        return self.stages()

    def trained_with_last_units(self) -> List[nn.Module]:
        """Modules trained along with the last N units (none here)."""
        return []

    def check_input_size(self, size: Sequence[int]) -> None:
        """Raise :class:`ConfigError` when the backbone cannot take (H, W) = ``size``
        images (every size works here)."""

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, ``out_channels``, h, w)."""
        return self._forward_stages(images)

    def _forward_stages(self, images: Tensor) -> Tensor:
        """:meth:`stages` chained: the frozen prefix chunked without a graph, the rest
        checkpointed when asked (see the module docstring)."""
        stages = self.stages()
        if not torch.is_grad_enabled() or images.requires_grad:
            return run_chain(stages, images)
        split = frozen_prefix(stages)
        x = self._frozen_forward(stages[:split], images) if split else images
        for stage in stages[split:]:
            x = checkpointed(stage, x) if self.checkpoint_activations else stage(x)
        return x

    def _frozen_forward(self, stages: Sequence[nn.Module], images: Tensor) -> Tensor:
        """The frozen blocks on (B, 3, H, W) images, chunk by chunk, without a graph."""
        count = images.shape[0]
        with torch.no_grad():
            chunk, out, done = self.frozen_chunk, None, 0
            if chunk <= 0:
                first, largest = run_chain_measuring(stages, images[:1])
                if count == 1:
                    return first
                chunk = max(1, FROZEN_CHUNK_BYTES // max(largest, 1))
                # filled in place: a list of chunks plus torch.cat would hold the output twice
                out = first.new_empty((count,) + first.shape[1:])
                out[:1] = first
                done = 1
            while done < count:
                part = run_chain(stages, images[done : done + chunk])
                if out is None:
                    if part.shape[0] == count:
                        return part
                    out = part.new_empty((count,) + part.shape[1:])
                out[done : done + part.shape[0]] = part
                done += part.shape[0]
        return out

    def set_trainable(self, mode: str) -> None:
        """Set ``requires_grad`` of every parameter: ``default``, ``all``, ``none`` or
        ``last:N`` (the last N of :meth:`trainable_units`, with
        :meth:`trained_with_last_units`)."""
        last = parse_trainable(mode, f" for backbone {self.name}")
        if mode == "default" and self.default_last is not None:
            last = min(self.default_last, len(self.trainable_units()))
        if last is not None:
            units = self.trainable_units()
            if last > len(units):
                raise ConfigError(
                    f"trainable '{mode}': backbone {self.name} has {len(units)} trainable units "
                    f"(blocks of its chain); N must be between 1 and {len(units)}"
                )
            chosen = units[len(units) - last:] + self.trained_with_last_units()
            trained = {id(p) for unit in chosen for p in unit.parameters()}
        for key, param in self.named_parameters():
            if last is not None:
                param.requires_grad_(id(param) in trained)
            elif mode == "all":
                param.requires_grad_(True)
            elif mode == "none":
                param.requires_grad_(False)
            else:
                param.requires_grad_(key.startswith(self.default_trainable_prefixes))
        self.trainable = mode
        self.train(self.training)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = list(module.parameters(recurse=False))
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self

    def reference_state_dict_keys(self) -> Sequence[str]:
        """Keys of the full (untruncated) model whose state dicts this backbone accepts.

        Keys in this set that the truncated backbone does not use (a classifier, a later
        stage) are ignored when loading; any other key is a mismatch.
        """
        return list(self.state_dict().keys())

    def extra_repr(self) -> str:
        return f"name={self.name}, out_channels={self.out_channels}, stride={self.stride}"


class VGG16Backbone(Backbone):
    """VGG16 (Simonyan & Zisserman, ICLR 2015) features up to conv5_3, before ReLU/pool5.

    Input (B, 3, H, W) -> output (B, 512, H/16, W/16) (floor division at each pool).
    """

    name = "vgg16"
    out_channels = 512
    stride = 16
    # conv5_1, conv5_2, conv5_3 are features.24, .26, .28 (ReLUs in between).
    default_trainable_prefixes = ("features.24.", "features.26.", "features.28.")

    def __init__(self) -> None:
        super().__init__()
        # Build on the meta device: the 25088x4096 classifier is never allocated.
        with torch.device("meta"):
            full = torchvision.models.vgg16(weights=None)
        self._reference_keys = list(full.state_dict().keys())
        self.features = full.features[:29].to_empty(device="cpu")
        for module in self.features.modules():  # torchvision's VGG initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def reference_state_dict_keys(self) -> Sequence[str]:
        return self._reference_keys

    def stages(self) -> List[nn.Module]:
        """The five pooling blocks (conv1_1..pool1, ..., conv5_1..conv5_3)."""
        return _split_after(self.features, nn.MaxPool2d)


class ResNetBackbone(Backbone):
    """torchvision ResNet (He et al., CVPR 2016) cut after ``layer3`` or ``layer4``."""

    default_mean = IMAGENET_MEAN
    default_std = IMAGENET_STD

    def __init__(self, depth: int, stage: int) -> None:
        super().__init__()
        if depth not in (18, 50) or stage not in (4, 5):
            raise ConfigError(f"no ResNet backbone for depth {depth}, stage conv{stage}")
        full = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self._reference_keys = list(full.state_dict().keys())
        self.name = f"resnet{depth}_conv{stage}"
        self.conv1, self.bn1, self.relu, self.maxpool = full.conv1, full.bn1, full.relu, full.maxpool
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3
        last = "layer3"
        if stage == 5:
            self.layer4 = full.layer4
            last = "layer4"
        expansion = 1 if depth == 18 else 4
        self.out_channels = (256 if stage == 4 else 512) * expansion
        self.stride = 16 if stage == 4 else 32
        self.default_trainable_prefixes = (last + ".",)

    def reference_state_dict_keys(self) -> Sequence[str]:
        return self._reference_keys

    def stages(self) -> List[nn.Module]:
        """The stem (conv1, bn1, relu, maxpool), then every residual block of layer1..layer3
        (and layer4)."""
        layers = [self.layer1, self.layer2, self.layer3] + ([self.layer4] if hasattr(self, "layer4") else [])
        return [nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool)] + [b for layer in layers for b in layer]


class SmallBackbone(Backbone):
    """A small BatchNorm-free CNN for CPU experiments on the synthetic city.

    Five 3x3 convolutions (32, 64, 96, 128, 128 channels; the first three with stride 2),
    GroupNorm(8 groups) + ReLU after the first four, none after the last (like VGG16 cut
    before its last ReLU). (B, 3, 96, 128) -> (B, 128, 12, 16). Kaiming-normal init
    (fan_out, ReLU), zero biases, unit GroupNorm scale.
    """

    name = "small"
    out_channels = 128
    stride = 8
    default_trainable_prefixes = ("",)

    def __init__(self) -> None:
        super().__init__()
        widths = (32, 64, 96, 128)
        strides = (2, 2, 2, 1)
        layers: List[nn.Module] = []
        in_channels = 3
        for width, stride in zip(widths, strides):
            layers += [
                nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False),
                nn.GroupNorm(8, width),
                nn.ReLU(inplace=True),
            ]
            in_channels = width
        layers.append(nn.Conv2d(in_channels, self.out_channels, 3, padding=1))
        self.features = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stages(self) -> List[nn.Module]:
        """Each convolution with its GroupNorm and ReLU; the last convolution alone.
        (B, 3, H, W) -> (B, 128, ceil(H/8), ceil(W/8))."""
        return _split_after(self.features, nn.ReLU)


def parse_trainable(mode: Any, where: str = "") -> Optional[int]:
    """N of ``last:N`` (an integer >= 1), None for ``default`` / ``all`` / ``none``;
    :class:`ConfigError` for anything else."""
    if isinstance(mode, str) and mode in TRAINABLE_MODES:
        return None
    if isinstance(mode, str) and mode.startswith("last:"):
        count = mode[len("last:"):]
        if count.isdigit() and int(count) >= 1:
            return int(count)
    raise ConfigError(
        f"unknown trainable mode '{mode}'{where}; choose one of {', '.join(TRAINABLE_MODES)} "
        "or last:N (the last N blocks train, N >= 1)"
    )


def _split_after(layers: nn.Sequential, kind: type) -> List[nn.Module]:
    """``layers`` cut after every layer of type ``kind``, as Sequential slices (the
    parameters keep their names: a slice shares the modules)."""
    bounds = [0] + [i + 1 for i, layer in enumerate(layers) if isinstance(layer, kind)]
    if bounds[-1] != len(layers):
        bounds.append(len(layers))
    return [layers[a:b] for a, b in zip(bounds, bounds[1:])]


# name -> (constructor, torchvision weights enum member name or None)
_CATALOGUE: Dict[str, Tuple[Callable[[], Backbone], Optional[str]]] = {
    "vgg16": (VGG16Backbone, "VGG16_Weights.IMAGENET1K_V1"),
    "resnet18_conv4": (lambda: ResNetBackbone(18, 4), "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet18_conv5": (lambda: ResNetBackbone(18, 5), "ResNet18_Weights.IMAGENET1K_V1"),
    "resnet50_conv4": (lambda: ResNetBackbone(50, 4), "ResNet50_Weights.IMAGENET1K_V1"),
    "resnet50_conv5": (lambda: ResNetBackbone(50, 5), "ResNet50_Weights.IMAGENET1K_V1"),
    "small": (SmallBackbone, None),
}


def list_backbones() -> List[str]:
    """Names accepted by :func:`build_backbone` besides ``timm:<model>``."""
    return list(_CATALOGUE)


def build_backbone(
    name: str,
    pretrained: str = "none",
    trainable: str = "default",
    frozen_chunk: int = 0,
    checkpoint_activations: bool = False,
    options: Optional[Mapping[str, Any]] = None,
) -> Backbone:
    """Build a backbone from the catalogue, or a timm model as ``timm:<model name>``
    (:mod:`sfrs.models.timm_backbone`).

    Args:
        name: one of :func:`list_backbones`, or ``timm:`` and a timm model name.
        pretrained: ``"imagenet"`` (torchvision weights; downloaded or taken from the
            torch hub cache), ``"none"`` (random initialisation) or the path of a local
            state dict: a torchvision full-model state dict (e.g. ``vgg16-397923af.pth``)
            or a state dict of the truncated backbone. Loading is strict for every key the
            backbone uses; keys of the full torchvision model that the truncated backbone
            drops are ignored; anything else raises :class:`CheckpointError`.
        trainable: ``"default"`` (vgg16: conv5_1..conv5_3; ResNets: their last stage;
            small: everything; timm: see :mod:`sfrs.models.timm_backbone`), ``"all"``,
            ``"none"`` or ``"last:N"`` (the last N blocks of :meth:`Backbone.stages`;
            timm ViTs: the last N transformer blocks and the final norm). Frozen
            parameters get ``requires_grad=False``.
        frozen_chunk: images per chunk through the leading frozen blocks during training
            (0 = sized from the input: :data:`FROZEN_CHUNK_BYTES`).
        checkpoint_activations: recompute the trainable blocks' activations during the
            backward pass instead of keeping them.
        options: ``model.backbone_options``, where a ``timm:`` backbone is cut; other
            backbones take none.

    Returns:
        A :class:`Backbone`: (B, 3, H, W) -> (B, ``out_channels``, h, w).
    """
    options = dict(options or {})
    if not name.startswith(TIMM_PREFIX) and name not in _CATALOGUE:
        raise ConfigError(
            f"unknown backbone '{name}'; choose one of {', '.join(_CATALOGUE)} or {TIMM_PREFIX}<timm model name>"
        )
    parse_trainable(trainable)
    if isinstance(frozen_chunk, bool) or not isinstance(frozen_chunk, int) or frozen_chunk < 0:
        raise ConfigError(f"frozen_chunk must be an integer >= 0 (0 = automatic), got {frozen_chunk!r}")
    if name.startswith(TIMM_PREFIX):
        from sfrs.models.timm_backbone import build_timm_backbone  # timm loads only when used

        backbone = build_timm_backbone(name[len(TIMM_PREFIX):], pretrained, options)
    elif options:
        raise ConfigError(
            f"model.backbone_options: backbone '{name}' takes no options (got {', '.join(map(str, options))}); "
            f"only {TIMM_PREFIX} backbones do"
        )
    else:
        backbone = _catalogue_backbone(name, pretrained)
    backbone.set_trainable(trainable)
    backbone.frozen_chunk = frozen_chunk
    backbone.checkpoint_activations = bool(checkpoint_activations)
    return backbone


def _catalogue_backbone(name: str, pretrained: str) -> Backbone:
    constructor, weights_name = _CATALOGUE[name]
    if pretrained == "imagenet":
        if weights_name is None:
            raise CheckpointError(
                f"backbone '{name}' has no ImageNet weights; use --pretrained none "
                "or the path of a local state dict"
            )
        state = fetch_imagenet_state_dict(weights_name)
        backbone = constructor()
        load_backbone_state_dict(backbone, state, source=f"ImageNet weights {weights_name}")
    elif pretrained == "none":
        backbone = constructor()
    else:
        state = read_state_dict(pretrained)
        backbone = constructor()
        load_backbone_state_dict(backbone, state, source=f"checkpoint {pretrained}")
    return backbone
