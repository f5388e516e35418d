"""The label-free adapter of a frozen network (EM-CVGL, Li et al., "Learning Cross-view
Visual Geo-localization without Ground Truth", 2024), saved with the model.

A linear auto-encoder on global descriptors, shared by both views: encoder
Linear(D, H) + BatchNorm1d(H), decoder Linear(H, D) + BatchNorm1d(D), no non-linearity.
Retrieval uses ``L2norm(encoder(x))``; the decoder only serves the reconstruction term
during adaptation. The learnable InfoNCE temperature is a parameter of this module, so
it is in its ``state_dict`` and in every checkpoint (the reference keeps it in a plain
dict attribute, outside the module state, and loses it on save).

Training the adapter is :mod:`sfrs.adaptation`; here lives only the fitted module.
"""
from __future__ import annotations

import math
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sfrs.errors import CheckpointError

#: The reference's initial inverse temperature (logit scale): 1 / 0.07.
DEFAULT_SCALE_INIT = 1.0 / 0.07
DEFAULT_HIDDEN_DIM = 2048


class Adapter(nn.Module):
    """``x (B, D) -> L2norm(BN(Linear(x))) (B, H)``; ``reconstruct`` gives the (B, D) decoding.

    Attributes:
        encoder: Linear(D, H) + BatchNorm1d(H).
        decoder: Linear(H, D) + BatchNorm1d(D).
        logit_scale: scalar parameter, log of the inverse temperature of the InfoNCE
            logits (CLIP's parameterisation: the scale ``exp(logit_scale)`` stays positive).
    """

    def __init__(self, in_dim: int, hidden_dim: int = DEFAULT_HIDDEN_DIM, scale_init: float = DEFAULT_SCALE_INIT) -> None:
        super().__init__()
        if in_dim < 1 or hidden_dim < 1:
            raise ValueError(f"Adapter needs positive dimensions, got in_dim={in_dim}, hidden_dim={hidden_dim}")
        if not scale_init > 0:
            raise ValueError(f"Adapter needs a positive initial logit scale, got {scale_init}")
        self.encoder = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim))
        self.decoder = nn.Sequential(nn.Linear(hidden_dim, in_dim), nn.BatchNorm1d(in_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(scale_init), dtype=torch.float32))

    @property
    def in_dim(self) -> int:
        return int(self.encoder[0].in_features)

    @property
    def hidden_dim(self) -> int:
        return int(self.encoder[0].out_features)

    @property
    def out_dim(self) -> int:
        return self.hidden_dim

    @property
    def scale(self) -> Tensor:
        """The inverse temperature multiplying cosine similarities (scalar tensor)."""
        return self.logit_scale.exp()

    def encode(self, x: Tensor) -> Tensor:
        """(B, D) -> (B, H), not normalised."""
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) -> L2-normalised (B, H): the retrieval descriptor."""
        return F.normalize(self.encoder(x), p=2, dim=1)

    def reconstruct(self, x: Tensor) -> Tensor:
        """(B, D) -> L2-normalised decoding (B, D) of the encoding of ``x``."""
        return F.normalize(self.decoder(self.encoder(x)), p=2, dim=1)

    def extra_repr(self) -> str:
        return f"{self.in_dim} -> {self.hidden_dim}, temperature {1.0 / float(self.scale):.4f}"

    # -- persistence (the ``adapter`` entry of a model file) --------------------------------
    def payload(self) -> Dict[str, Any]:
        """``{"in_dim", "hidden_dim", "state_dict"}`` on the CPU (temperature included)."""
        return {
            "in_dim": self.in_dim,
            "hidden_dim": self.hidden_dim,
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_payload(cls, payload: Any, source: str = "<checkpoint>") -> "Adapter":
        """The adapter of :meth:`payload`; one-line :class:`CheckpointError` when it does not fit."""
        try:
            adapter = cls(int(payload["in_dim"]), int(payload["hidden_dim"]))
            adapter.load_state_dict(payload["state_dict"], strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{source}: invalid adapter ({first})") from None
        return adapter
