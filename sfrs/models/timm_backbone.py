"""Backbones from timm (Wightman, PyTorch Image Models): ``model.backbone: timm:<model>``.

The kind of backbone follows from the model timm builds:

- **Vision transformers** (timm ``VisionTransformer`` and its subclasses: ViT, DeiT,
  DINOv2 with or without registers, Oquab et al. 2023 / Darcet et al. 2024). Built with
  ``dynamic_img_size=True``: any (H, W) that is a multiple of the patch size P works, timm
  resampling the position embeddings; other sizes are a :class:`ConfigError`.
  ``backbone_options: {blocks: N}`` keeps the first N transformer blocks (default: all).
  The model's final norm is applied after the last kept block, as timm's
  ``forward_features`` does after the last block and ``forward_intermediates(norm=True)``
  after an earlier one (models whose features timm leaves unnormalised, with ``fc_norm``
  instead, stay so). ``forward(images)`` gives the patch tokens as a map
  (B, C, H/P, W/P) (class and register tokens dropped); ``forward_tokens(images)`` also
  gives the class token (B, C), normalised like the patch tokens. Chain
  (:meth:`~sfrs.models.backbones.Backbone.stages`): [patch embedding + position
  embedding + prefix tokens, block 1, ..., block N, final norm]. ``trainable``:
  ``last:K`` trains the last K kept blocks and the final norm; ``default`` is ``last:4``.
- **CNNs**: any model whose ``features_only`` network timm builds as a chain of its
  modules (a ``FeatureListNet``: ResNets, ConvNeXt, RegNets, ...).
  ``backbone_options: {stage: S}`` cuts after feature level S, an index into timm's
  ``feature_info`` as timm's ``out_indices`` (0-based; default the last; e.g. for
  ResNets 0 = stem (stride 2), 3 = layer3 (stride 16), 4 = layer4 (stride 32)).
  ``out_channels`` and ``stride`` are that level's in ``feature_info``. Chain: the
  modules grouped so that each group ends at a feature level (the stem, then each
  stage); ``last:K`` trains the last K groups; ``default`` is ``last:1``, the last stage.

Weights (``pretrained``): ``imagenet`` = timm's ``pretrained=True`` (the model's default
pretrained tag, fetched from the Hugging Face hub or its local cache); ``none`` = timm's
random initialisation; a path = a ``.safetensors`` file or a torch state dict of the full
timm model (keys of the parts the backbone drops, e.g. the classifier or later blocks,
are ignored) or of the kept part, loaded strictly. ``default_mean`` / ``default_std``
come from the model's pretrained configuration (``pretrained_cfg``).

Parameter names are timm's under ``model.`` (for CNNs with timm's ``features_only``
renaming of first-level sequential containers: ``stages.0`` -> ``stages_0``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import timm
import torch
from timm.models import VisionTransformer
from timm.models._features import FeatureDictNet, _module_list
from torch import Tensor, nn

from sfrs.errors import CheckpointError, ConfigError
from sfrs.models.backbones import IMAGENET_MEAN, IMAGENET_STD, TIMM_PREFIX, Backbone
from sfrs.models.weights import _one_line, load_state_dict_strictly, read_state_dict

#: default ``trainable`` of a ViT: its last 4 blocks (and the final norm).
VIT_DEFAULT_TRAINABLE_BLOCKS = 4

# Children of a timm VisionTransformer that are not part of the token embedding stage.
_AFTER_EMBEDDING = frozenset({"blocks", "norm", "fc_norm", "head", "head_drop", "attn_pool"})


class TimmBackbone(Backbone):
    """A timm model as a :class:`Backbone` (see the module docstring).

    Attributes:
        model: the timm module kept (a pruned ``VisionTransformer`` or a ``FeatureListNet``).
        model_name: timm's model name (``name`` is ``timm:<model_name>``).
    """

    def __init__(self, model_name: str, model: nn.Module, pretrained_cfg: Mapping[str, Any]) -> None:
        super().__init__()
        self.model_name = model_name
        self.name = TIMM_PREFIX + model_name
        self.model = model
        self.default_mean = _three(pretrained_cfg.get("mean"), IMAGENET_MEAN)
        self.default_std = _three(pretrained_cfg.get("std"), IMAGENET_STD)

    def _rename_weight_key(self, key: str) -> str:
        """The name in :attr:`model` of a full timm model's state-dict ``key``."""
        return key

    def load_weights(self, state: Mapping[str, Tensor], full_keys: Iterable[str], source: str) -> None:
        """Strictly load a state dict of the full timm model (``full_keys``; keys of the
        dropped parts ignored) or of :attr:`model` itself."""
        if isinstance(state, Mapping):
            state = {self._rename_weight_key(k) if isinstance(k, str) else k: v for k, v in state.items()}
        load_state_dict_strictly(
            self.model, state, [self._rename_weight_key(k) for k in full_keys], self.name, source,
            expected=f"a state dict of timm model '{self.model_name}' (timm's parameter names)",
        )


class TimmVisionTransformer(TimmBackbone):
    """A timm ``VisionTransformer`` cut after ``blocks`` blocks: patch tokens as a
    (B, C, H/P, W/P) map, and the class token."""

    default_last = VIT_DEFAULT_TRAINABLE_BLOCKS

    def __init__(self, model_name: str, vit: VisionTransformer, blocks: int) -> None:
        vit.prune_intermediate_layers([blocks - 1], prune_norm=False, prune_head=True)
        super().__init__(model_name, vit, vit.pretrained_cfg)
        patch = tuple(vit.patch_embed.patch_size)
        if patch[0] != patch[1]:
            raise ConfigError(f"backbone {self.name}: non-square patches {patch[0]}x{patch[1]} are not supported")
        self.stride = self.input_multiple = int(patch[0])
        self.out_channels = int(vit.embed_dim)
        self.class_token = bool(vit.has_class_token)
        self.prefix_tokens = int(vit.num_prefix_tokens)

    def stages(self) -> List[nn.Module]:
        """[token embedding, block 1, ..., block N, final norm]; tokens (B, P + h*w, C)
        after the first."""
        return [_TokenEmbedding(self.model)] + list(self.model.blocks) + [self.model.norm]

    def trainable_units(self) -> List[nn.Module]:
        return list(self.model.blocks)

    def trained_with_last_units(self) -> List[nn.Module]:
        return [self.model.norm]

    def check_input_size(self, size: Sequence[int]) -> None:
        height, width = int(size[0]), int(size[1])
        if height % self.stride or width % self.stride:
            fit = "x".join(str(max(self.stride, round(s / self.stride) * self.stride)) for s in (height, width))
            raise ConfigError(
                f"input size {height}x{width} is not a multiple of the patch size {self.stride} of "
                f"backbone {self.name} (nearest multiples: {fit})"
            )

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> patch tokens (B, C, H/P, W/P)."""
        return self.forward_tokens(images)[0]

    def forward_tokens(self, images: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        """(B, 3, H, W) -> (patch tokens (B, C, H/P, W/P), class token (B, C)); the class
        token is None for a model without one (``class_token`` False)."""
        self.check_input_size(images.shape[-2:])
        tokens = self._forward_stages(images)  # (B, prefix + h*w, C)
        batch, height, width = images.shape[0], images.shape[-2] // self.stride, images.shape[-1] // self.stride
        patches = tokens[:, self.prefix_tokens:]
        feature_map = patches.reshape(batch, height, width, -1).permute(0, 3, 1, 2).contiguous()
        return feature_map, (tokens[:, 0] if self.class_token else None)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, blocks={len(self.model.blocks)}, class_token={self.class_token}"


class _TokenEmbedding(nn.Module):
    """The first stage of a ViT: patch embedding, prefix (class / register) tokens and
    position embedding, as in timm's ``forward_features``. (B, 3, H, W) -> (B, P + h*w, C).

    It registers the embedding's own modules and parameters (shared with the ViT) so that
    the frozen / trainable split sees exactly them; the ViT itself is not registered.
    """

    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        object.__setattr__(self, "vit", vit)
        for name, child in vit.named_children():
            if name not in _AFTER_EMBEDDING:
                self.add_module(name, child)
        for name, param in vit.named_parameters(recurse=False):
            self.register_parameter(name, param)

    def forward(self, images: Tensor) -> Tensor:
        vit = self.vit
        return vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))


class TimmFeatureNet(TimmBackbone):
    """A timm CNN's ``features_only`` chain cut after one feature level."""

    default_last = 1

    def __init__(self, model_name: str, net: FeatureDictNet, level_modules: Sequence[str],
                 renames: Mapping[str, str], pretrained_cfg: Mapping[str, Any]) -> None:
        super().__init__(model_name, net, pretrained_cfg)
        self.out_channels = int(net.feature_info.channels()[-1])
        self.stride = int(net.feature_info.reduction()[-1])
        self._renames = dict(renames)
        names = list(net.keys())
        ends = [names.index(name) for name in level_modules]
        groups = [names[a:b] for a, b in zip([0] + [e + 1 for e in ends], [e + 1 for e in ends])]
        for previous, group in zip(groups, groups[1:]):
            # a block must not start with an in-place layer (a checkpointed block would
            # modify the input it saved): such a layer closes the block before instead
            while len(group) > 1 and getattr(net[group[0]], "inplace", False) is True:
                previous.append(group.pop(0))
        self._groups = [group for group in groups if group]

    def _rename_weight_key(self, key: str) -> str:
        head, _, rest = key.partition(".")
        second, _, tail = rest.partition(".")
        flattened = self._renames.get(f"{head}.{second}")
        return f"{flattened}.{tail}" if flattened and tail else key

    def stages(self) -> List[nn.Module]:
        """The modules of the chain grouped to end at each feature level: the stem, then
        each stage (a ResNet: conv1..act1, maxpool + layer1, layer2, ...)."""
        return [nn.Sequential(*[self.model[name] for name in group]) for group in self._groups]


def build_timm_backbone(model_name: str, pretrained: str, options: Mapping[str, Any]) -> TimmBackbone:
    """The backbone ``timm:<model_name>`` (see the module docstring).

    Args:
        model_name: a timm model name (``timm.list_models()``), e.g. ``vit_small_patch14_dinov2``.
        pretrained: ``imagenet``, ``none`` or the path of a ``.safetensors`` / torch state dict.
        options: ``{blocks: N}`` for a ViT, ``{stage: S}`` for a CNN (model.backbone_options).

    Raises:
        ConfigError: unknown model, unsupported kind of model, or a bad option.
        CheckpointError: weights that cannot be fetched or do not fit.
    """
    name = TIMM_PREFIX + model_name
    if not model_name or not timm.is_model(model_name):
        raise ConfigError(f"unknown timm model '{model_name}' (model.backbone {name}); timm.list_models() names them")
    skeleton = _skeleton(model_name)
    full_keys = list(skeleton.state_dict().keys())
    if isinstance(skeleton, VisionTransformer):
        _check_options(name, options, {"blocks": "the number of transformer blocks kept"})
        depth = len(skeleton.blocks)
        blocks = _int_option(name, options, "blocks", 1, depth, depth)
        vit = _create(model_name, pretrained, dynamic_img_size=True)
        backbone: TimmBackbone = TimmVisionTransformer(model_name, vit, blocks)
    else:
        feature_info = getattr(skeleton, "feature_info", None)
        if not feature_info:
            raise ConfigError(f"backbone {name}: timm gives no feature levels for this model")
        _check_options(name, options, {"stage": "the feature level to cut after"})
        levels = len(feature_info)
        stage = _int_option(name, options, "stage", 0, levels - 1, levels - 1)
        net = _create(model_name, pretrained, features_only=True, out_indices=(stage,))
        layout = str(getattr(net, "output_fmt", "NCHW")).split(".")[-1]
        if not isinstance(net, FeatureDictNet) or layout != "NCHW":
            how = f"{layout} maps" if isinstance(net, FeatureDictNet) else type(net).__name__
            raise ConfigError(
                f"backbone {name}: timm gives its features as {how}, not as a chain of its modules with "
                "(B, C, h, w) outputs; supported are VisionTransformer models and CNNs such as resnet*, "
                "convnext*, regnet*"
            )
        renames = {old: new for new, old, _ in _module_list(skeleton, flatten_sequential=True) if new in net}
        level_modules = [renames.get(info["module"], info["module"]) for info in feature_info[: stage + 1]]
        if not all(module in net for module in level_modules):
            raise ConfigError(f"backbone {name}: timm's feature levels are not modules of its feature chain")
        backbone = TimmFeatureNet(model_name, net, level_modules, renames, skeleton.pretrained_cfg)
    if pretrained not in ("imagenet", "none"):
        backbone.load_weights(read_state_dict(pretrained), full_keys, source=f"checkpoint {pretrained}")
    return backbone


def _skeleton(model_name: str) -> nn.Module:
    """The full model without memory or initialisation (meta tensors) when timm allows."""
    try:
        with torch.device("meta"):
            return timm.create_model(model_name)
    except Exception:  # noqa: BLE001 - a model whose constructor needs real tensors
        return timm.create_model(model_name)


def _create(model_name: str, pretrained: str, **kwargs: Any) -> nn.Module:
    if pretrained != "imagenet":
        try:
            return timm.create_model(model_name, pretrained=False, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"backbone {TIMM_PREFIX}{model_name}: timm cannot build it so ({exc})") from None
    try:
        return timm.create_model(model_name, pretrained=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - offline, no weights for the model, corrupt cache, ...
        raise CheckpointError(
            f"could not fetch the pretrained weights of timm model '{model_name}' ({_one_line(exc)}); "
            "use --pretrained none, or fetch the weights where there is internet and pass the local "
            ".safetensors file as --pretrained"
        ) from exc


def _check_options(name: str, options: Mapping[str, Any], known: Dict[str, str]) -> None:
    for key in options:
        if key not in known:
            described = "; ".join(f"{k}: {what}" for k, what in known.items())
            raise ConfigError(
                f"model.backbone_options: backbone {name} has no option '{key}' (its options: {described})"
            )


def _int_option(name: str, options: Mapping[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"model.backbone_options.{key} must be an integer from {low} to {high} for backbone {name}, got {value!r}"
        )
    return value


def _three(values: Any, fallback: Tuple[float, float, float]) -> Tuple[float, float, float]:
    if values is None or len(values) != 3:
        return fallback
    return tuple(float(v) for v in values)  # type: ignore[return-value]
