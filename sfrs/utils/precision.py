"""Mixed precision: the arithmetic a network runs in, by name (``fp32``, ``bf16``, ``fp16``).

``fp32`` runs as written. ``bf16`` and ``fp16`` run the forward pass under
``torch.autocast(device_type, dtype)``: matrix products and convolutions in the low
precision, reductions and normalisations in float32 (autocast's own op lists). Autocast
on the CPU accepts float16 as well as bfloat16 in the torch this project requires
(2.x), so ``fp16`` is allowed on every device; on CPUs without native float16 kernels
it is slow, not wrong. Training in ``fp16`` on CUDA scales the loss
(``torch.amp.GradScaler``, :func:`grad_scaler`); ``bf16`` has float32's range and needs
no scaling. Whatever the precision, callers keep descriptors in float32 and
L2-normalise them in float32.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Union

import torch

from sfrs.errors import ConfigError

#: precision name -> the dtype autocast runs in (None: no autocast).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(name: str, key: str = "precision") -> str:
    """``name`` if it is one of :data:`PRECISIONS`, else a ConfigError naming ``key``."""
    if name not in PRECISIONS:
        raise ConfigError(f"{key} must be one of {', '.join(PRECISIONS)}, got '{name}'")
    return name


def autocast(device: Union[str, torch.device], precision: str) -> ContextManager:
    """The context a forward pass runs in at ``precision`` on ``device`` (a no-op for fp32)."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(device: Union[str, torch.device], precision: str) -> "torch.amp.GradScaler":
    """A loss scaler, enabled only for fp16 on CUDA (the case whose small gradients
    underflow float16); disabled it passes losses and steps through unchanged."""
    device = torch.device(device)
    enabled = check_precision(precision) == "fp16" and device.type == "cuda"
    return torch.amp.GradScaler(device.type, enabled=enabled)
