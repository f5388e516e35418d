"""Stable short hashes that key caches by everything that produced them."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def fingerprint(**parts: Any) -> str:
    """A short stable hash of keyword values (JSON-serialised, sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of a module's weights and buffers (names and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
