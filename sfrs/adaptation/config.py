"""The configuration of ``sfrs-adapt``: typed, frozen sections whose defaults are the
reference's hyper-parameters (EM-CVGL on University-1652, ``shared/spec`` part B).

    config = load_adapt_config("adapt.yaml", ["optim.steps=100"], direct={"data.dataset": "u1652:/data/u1652"})

Keys are set by YAML (``--config``), by the command's flags and by ``--set key=value``,
in that order; unknown keys and wrong types are one-line errors naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from sfrs.config import build_config
from sfrs.errors import ConfigError
from sfrs.models.adapter import DEFAULT_HIDDEN_DIM, DEFAULT_SCALE_INIT


@dataclass(frozen=True)
class TargetConfig:
    """The unlabelled target and how its frozen features are extracted."""

    #: any ``--dataset`` spec; ``u1652:<root>`` (University-1652 layout) adapts drone <-> satellite.
    dataset: str = ""
    #: the split whose images (queries and database, or drone and satellite) train the adapter.
    split: str = "train"
    #: image root of a NetVLAD ``.mat`` spec.
    images_root: Optional[str] = None
    #: splits evaluated before and after adaptation when they exist (University-1652: test,
    #: in both directions); their ground truth is never used for training.
    eval_splits: Tuple[str, ...] = ("val", "test")
    #: images per batch of the (one-off) frozen feature extraction.
    batch_size: int = 32
    num_workers: int = 0
    #: store the cached frozen features as float16 (half the disk).
    half: bool = False


@dataclass(frozen=True)
class AdapterConfig:
    """The adapter: Linear+BN encoder/decoder shared by both views."""

    hidden_dim: int = DEFAULT_HIDDEN_DIM
    #: initial inverse temperature of the InfoNCE logits (the reference: 1 / 0.07); learnt.
    scale_init: float = DEFAULT_SCALE_INIT
    #: how the views meet BatchNorm in training: ``joint`` (one batch of both views, whose
    #: running statistics are then those of retrieval) or ``per_view`` (the reference: each
    #: view normalised by its own batch statistics, so a difference of mean between the
    #: views vanishes in training but not at retrieval, where one set of running
    #: statistics serves both views; see docs for the measured difference).
    batch_norm: str = "joint"


@dataclass(frozen=True)
class PseudoLabelConfig:
    """E-step: hard pseudo-labels from mutual nearest neighbours."""

    #: where nearest neighbours are searched: ``batch`` (the reference: the step's batch, in
    #: training-mode features) or ``whole_set`` (every row of both views, faiss, BatchNorm
    #: by the set's statistics; the batch keeps the labels that fall inside it). Mutual
    #: nearest neighbours pair each view-B row with at most one view-A row: over the whole
    #: set a satellite tile with 50 drone views labels one of them, inside a batch each
    #: batch labels its own, which is why ``batch`` trains better where view A holds many
    #: images per view-B image (measured in docs/experiments.md).
    scope: str = "batch"
    #: a row's best cosine similarity must exceed this to give a pseudo-label.
    threshold: float = 0.1
    #: mutual nearest neighbours are kept only when more than this many exist in the batch;
    #: otherwise every row's nearest neighbour is a candidate (as in the reference).
    min_mutual: int = 10


@dataclass(frozen=True)
class AdaptLossConfig:
    """M-step objective: weight * InfoNCE + weight * (rec(view A) + rec(view B))."""

    label_smoothing: float = 0.1
    infonce_weight: float = 1.0
    #: weight of each view's reconstruction term (the reference: 1, i.e. 1:1:1).
    reconstruction_weight: float = 1.0


@dataclass(frozen=True)
class AdaptOptimConfig:
    """AdamW with linear warm-up then cosine decay, value clipping of the gradients."""

    steps: int = 200
    #: view-A rows (drone images, or queries) per step, drawn without replacement epoch by epoch.
    batch_size: int = 700
    #: view-B rows (satellite tiles, or database images) per step; 0 = all of them (the reference).
    gallery_size: int = 0
    lr: float = 2e-4
    weight_decay: float = 0.01
    #: the reference warms up for 1 epoch, which is 1 step there (an epoch is one batch of
    #: its 701 satellite tiles).
    warmup_steps: int = 1
    #: each gradient element is clipped to [-grad_clip, grad_clip] (0 = no clipping).
    grad_clip: float = 100.0


@dataclass(frozen=True)
class AdaptConfig:
    """Everything ``sfrs-adapt`` needs besides the checkpoint and the output folder."""

    data: TargetConfig = field(default_factory=TargetConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    loss: AdaptLossConfig = field(default_factory=AdaptLossConfig)
    optim: AdaptOptimConfig = field(default_factory=AdaptOptimConfig)
    #: N of the Recall@N reported before and after.
    recall_at: Tuple[int, ...] = (1, 5, 10, 20)
    #: faiss index factory string of the Recall@N search.
    index: str = "Flat"
    #: steps between two resumable checkpoints (``checkpoints/last.pt``).
    checkpoint_every: int = 20
    seed: int = 0


BATCH_NORM_MODES = ("joint", "per_view")
PSEUDO_LABEL_SCOPES = ("batch", "whole_set")
#: keys that do not change the adapter's weights: a run may resume with other values.
RESUMABLE_KEYS = ("data.eval_splits", "data.batch_size", "data.num_workers", "recall_at", "index", "checkpoint_every")


def validate_adapt_config(config: AdaptConfig) -> None:
    """One clear error per problem, naming the key."""

    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(bool(config.data.dataset), "data.dataset: no target data set given (--dataset SPEC)")
    require(bool(config.data.split), "data.split must not be empty")
    require(config.data.batch_size >= 1, "data.batch_size must be at least 1")
    require(config.data.num_workers >= 0, "data.num_workers must be >= 0")
    require(config.adapter.hidden_dim >= 1, "adapter.hidden_dim must be at least 1")
    require(config.adapter.scale_init > 0, "adapter.scale_init must be > 0")
    require(config.adapter.batch_norm in BATCH_NORM_MODES,
            f"adapter.batch_norm must be {' or '.join(BATCH_NORM_MODES)}, got '{config.adapter.batch_norm}'")
    require(config.pseudo_labels.scope in PSEUDO_LABEL_SCOPES,
            f"pseudo_labels.scope must be {' or '.join(PSEUDO_LABEL_SCOPES)}, got '{config.pseudo_labels.scope}'")
    require(-1.0 <= config.pseudo_labels.threshold < 1.0, "pseudo_labels.threshold must be in [-1, 1) (a cosine similarity)")
    require(config.pseudo_labels.min_mutual >= 0, "pseudo_labels.min_mutual must be >= 0")
    require(0.0 <= config.loss.label_smoothing < 1.0, "loss.label_smoothing must be in [0, 1)")
    require(config.loss.infonce_weight >= 0, "loss.infonce_weight must be >= 0")
    require(config.loss.reconstruction_weight >= 0, "loss.reconstruction_weight must be >= 0")
    optim = config.optim
    require(optim.steps >= 1, "optim.steps must be at least 1")
    require(optim.batch_size >= 1, "optim.batch_size must be at least 1")
    require(optim.gallery_size >= 0, "optim.gallery_size must be >= 0 (0 = every view-B row)")
    require(optim.lr > 0, "optim.lr must be > 0")
    require(optim.weight_decay >= 0, "optim.weight_decay must be >= 0")
    require(0 <= optim.warmup_steps < optim.steps, "optim.warmup_steps must be in [0, optim.steps)")
    require(optim.grad_clip >= 0, "optim.grad_clip must be >= 0 (0 = no clipping)")
    require(bool(config.recall_at) and min(config.recall_at) >= 1, "recall_at must list positive integers")
    require(config.checkpoint_every >= 1, "checkpoint_every must be at least 1")
    require(config.seed >= 0, "seed must be >= 0")


def load_adapt_config(
    path: Optional[Union[str, Path]] = None,
    overrides: Sequence[str] = (),
    *,
    direct: Optional[Mapping[str, Any]] = None,
) -> AdaptConfig:
    """A validated :class:`AdaptConfig`: defaults <- YAML ``path`` <- ``direct`` dotted
    values (command flags; None values are skipped) <- ``overrides`` (``"optim.lr=1e-3"``).

    Raises:
        ConfigError: unknown key, wrong type or impossible value, named in one line.
    """
    config = build_config(AdaptConfig, path, overrides, direct=direct)
    validate_adapt_config(config)
    return config
