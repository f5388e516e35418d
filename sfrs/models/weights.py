"""Backbone weights from a file (torch or safetensors) or from torchvision's ImageNet
release, loaded strictly with one-line errors that say which key or shape does not fit
and what to do."""
from __future__ import annotations

import os
from typing import Iterable, Mapping

import torch
import torchvision
from torch import nn

from sfrs.errors import CheckpointError

_MAX_KEYS_IN_MESSAGE = 3


def load_backbone_state_dict(backbone: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``backbone``.

    Every key of ``backbone.state_dict()`` must be present with the same shape; extra keys
    are allowed only if they belong to the full torchvision model the backbone is cut
    from. On mismatch raises :class:`CheckpointError` naming ``source`` and the first
    missing / unexpected / mis-shaped keys.
    """
    load_state_dict_strictly(
        backbone, state, backbone.reference_state_dict_keys(), backbone.name, source,
        expected=f"a torchvision full-model state dict or a state dict of the truncated '{backbone.name}' backbone",
    )


def load_state_dict_strictly(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    reference_keys: Iterable[str],
    name: str,
    source: str,
    expected: str,
) -> None:
    """Strictly load ``state`` into ``module`` (a backbone cut from a larger model).

    Every key of ``module.state_dict()`` must be present with the same shape; other keys
    are allowed only if they are in ``reference_keys`` (the full model's, whose dropped
    parts the module does not keep). On mismatch raises :class:`CheckpointError` naming
    ``source``, the backbone ``name``, the first missing / unexpected / mis-shaped keys
    and what was ``expected``.
    """
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{source} is not a state dict (a mapping of parameter names to tensors) "
            f"for backbone '{name}'"
        )
    own = module.state_dict()
    allowed = set(reference_keys) | set(own)
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
            f"{source} does not match backbone '{name}': {'; '.join(problems)}; expected {expected}"
        )
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def read_state_dict(path: str) -> Mapping[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file (read without running
    pickled code); :class:`CheckpointError` naming ``path`` when absent or unreadable."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f"pretrained weights file {path} does not exist "
            "(--pretrained takes 'imagenet', 'none' or the path of a local state dict)"
        )
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file  # comes with timm

            return load_file(path, device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear line
        raise CheckpointError(
            f"cannot read pretrained weights file {path}: {_one_line(exc)}"
        ) from exc


def fetch_imagenet_state_dict(weights_name: str) -> Mapping[str, torch.Tensor]:
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
