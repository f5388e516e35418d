"""Convolutional backbones: images (B, 3, H, W) -> local feature maps (B, C, h, w).

Every backbone built by :func:`build_backbone` has the same contract:

- ``forward(images)`` takes a float tensor of shape (B, 3, H, W), normalised with the
  backbone's own ``default_mean`` / ``default_std`` (RGB, values in [0, 1] before
  normalisation), and returns a tensor of shape (B, ``out_channels``, h, w);
- ``name`` (the catalogue name), ``out_channels`` (C) and ``stride`` (H / h) attributes.

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
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torchvision
from torch import nn

from sfrs.errors import CheckpointError, ConfigError

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)

PRETRAINED_MODES = ("imagenet", "none")  # anything else is a path to a local state dict
TRAINABLE_MODES = ("default", "all", "none")

_MAX_KEYS_IN_MESSAGE = 3


class Backbone(nn.Module):
    """Base class: the attributes of the backbone contract and trainability handling.

    Attributes:
        name: catalogue name, e.g. ``vgg16``.
        out_channels: number of channels C of the output map.
        stride: input pixels per output location along each axis.
        default_mean / default_std: per-channel RGB normalisation the weights expect.
        trainable: the mode last applied by :meth:`set_trainable`.
    """

    name: str = ""
    out_channels: int = 0
    stride: int = 1
    default_mean: Tuple[float, float, float] = IMAGENET_MEAN
    default_std: Tuple[float, float, float] = IMAGENET_STD
    # Parameter-name prefixes trained by trainable="default" ("" = everything).
    default_trainable_prefixes: Tuple[str, ...] = ("",)

    def __init__(self) -> None:
        super().__init__()
        self.trainable = "all"

    def set_trainable(self, mode: str) -> None:
        """Set ``requires_grad`` of every parameter: ``default``, ``all`` or ``none``."""
        if mode not in TRAINABLE_MODES:
            raise ConfigError(
                f"unknown trainable mode '{mode}' for backbone {self.name}; "
                f"choose one of {', '.join(TRAINABLE_MODES)}"
            )
        for key, param in self.named_parameters():
            if mode == "all":
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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 512, h, w)."""
        return self.features(images)


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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, ~H/stride, ~W/stride)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        x = self.layer3(self.layer2(self.layer1(x)))
        if hasattr(self, "layer4"):
            x = self.layer4(x)
        return x


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

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 128, ceil(H/8), ceil(W/8))."""
        return self.features(images)


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
    """Names accepted by :func:`build_backbone`."""
    return list(_CATALOGUE)


def build_backbone(name: str, pretrained: str = "none", trainable: str = "default") -> Backbone:
    """Build a backbone from the catalogue.

    Args:
        name: one of :func:`list_backbones`.
        pretrained: ``"imagenet"`` (torchvision weights; downloaded or taken from the
            torch hub cache), ``"none"`` (random initialisation) or the path of a local
            state dict: a torchvision full-model state dict (e.g. ``vgg16-397923af.pth``)
            or a state dict of the truncated backbone. Loading is strict for every key the
            backbone uses; keys of the full torchvision model that the truncated backbone
            drops are ignored; anything else raises :class:`CheckpointError`.
        trainable: ``"default"`` (vgg16: conv5_1..conv5_3; ResNets: their last stage;
            small: everything), ``"all"`` or ``"none"``. Frozen parameters get
            ``requires_grad=False``.

    Returns:
        A :class:`Backbone`: (B, 3, H, W) -> (B, ``out_channels``, h, w).
    """
    if name not in _CATALOGUE:
        raise ConfigError(f"unknown backbone '{name}'; choose one of {', '.join(_CATALOGUE)}")
    if trainable not in TRAINABLE_MODES:
        raise ConfigError(
            f"unknown trainable mode '{trainable}'; choose one of {', '.join(TRAINABLE_MODES)}"
        )
    constructor, weights_name = _CATALOGUE[name]
    if pretrained == "imagenet":
        if weights_name is None:
            raise CheckpointError(
                f"backbone '{name}' has no ImageNet weights; use --pretrained none "
                "or the path of a local state dict"
            )
        state = _fetch_imagenet_state_dict(weights_name)
        backbone = constructor()
        load_backbone_state_dict(backbone, state, source=f"ImageNet weights {weights_name}")
    elif pretrained == "none":
        backbone = constructor()
    else:
        state = _read_state_dict(pretrained)
        backbone = constructor()
        load_backbone_state_dict(backbone, state, source=f"checkpoint {pretrained}")
    backbone.set_trainable(trainable)
    return backbone


def load_backbone_state_dict(backbone: Backbone, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``backbone``.

    Every key of ``backbone.state_dict()`` must be present with the same shape; extra keys
    are allowed only if they belong to the full torchvision model the backbone is cut
    from. On mismatch raises :class:`CheckpointError` naming ``source`` and the first
    missing / unexpected / mis-shaped keys.
    """
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{source} is not a state dict (a mapping of parameter names to tensors) "
            f"for backbone '{backbone.name}'"
        )
    own = backbone.state_dict()
    allowed = set(backbone.reference_state_dict_keys()) | set(own)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in allowed]
    misshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatch", misshaped)):
        if keys:
            shown = ", ".join(keys[:_MAX_KEYS_IN_MESSAGE])
            more = f", ... ({len(keys)} in all)" if len(keys) > _MAX_KEYS_IN_MESSAGE else ""
            problems.append(f"{label} {shown}{more}")
    if problems:
        raise CheckpointError(
            f"{source} does not match backbone '{backbone.name}': {'; '.join(problems)}; "
            f"expected a torchvision full-model state dict or a state dict of the "
            f"truncated '{backbone.name}' backbone"
        )
    backbone.load_state_dict({k: state[k] for k in own}, strict=True)


def _read_state_dict(path: str) -> Mapping[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise CheckpointError(
            f"pretrained weights file {path} does not exist "
            "(--pretrained takes 'imagenet', 'none' or the path of a local state dict)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear line
        raise CheckpointError(
            f"cannot read pretrained weights file {path}: {_one_line(exc)}"
        ) from exc


def _fetch_imagenet_state_dict(weights_name: str) -> Mapping[str, torch.Tensor]:
    enum_name, member = weights_name.split(".")
    weights = getattr(torchvision.models, enum_name)[member]
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - offline, proxy, corrupt cache, ...
        raise CheckpointError(
            f"could not fetch ImageNet weights {weights_name} from {weights.url} "
            f"({_one_line(exc)}); use --pretrained none, or download that file where "
            "there is internet and pass its local path as --pretrained"
        ) from exc


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
