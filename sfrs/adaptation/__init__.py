"""Label-free adaptation of a frozen network to a new area or a new view pair (EM-CVGL,
Li et al., 2024): frozen features cached once, a shared Linear+BN adapter trained on
them with mutual-nearest-neighbour pseudo-labels (E-step), a symmetric InfoNCE with a
learnable temperature and a reconstruction regulariser (M-step).

    from sfrs.adaptation import adapt, load_adapt_config
    config = load_adapt_config(direct={"data.dataset": "u1652:/data/University-1652"})
    results = adapt(config, "best.pt", "runs/adapted")   # runs/adapted/adapted.pt, results.json

Modules: ``config`` (the settings), ``target`` (views to train on, splits to judge by),
``features`` (the frozen feature cache), ``pseudo_labels`` (E-step), ``losses`` (M-step
terms), ``loop`` (steps, checkpoints, resume), ``metrics`` (Recall@N and AP on features),
``results`` (results.json / .md), ``run`` (``adapt``, the whole procedure). The adapter
itself is a model component (:class:`sfrs.models.Adapter`), saved inside the model file.
"""
from sfrs.adaptation.config import (
    AdaptConfig,
    AdapterConfig,
    AdaptLossConfig,
    AdaptOptimConfig,
    PseudoLabelConfig,
    TargetConfig,
    load_adapt_config,
    validate_adapt_config,
)
from sfrs.adaptation.features import FeatureCache
from sfrs.adaptation.loop import AdaptationError, AdaptationLoop, batch_rows, gallery_rows, lr_at
from sfrs.adaptation.losses import reconstruction_l1, symmetric_info_nce
from sfrs.adaptation.metrics import average_precision, evaluate_task, mean_average_precision
from sfrs.adaptation.pseudo_labels import PseudoLabels, pseudo_labels, restrict_to_batch, whole_set_pseudo_labels
from sfrs.adaptation.run import adapt
from sfrs.adaptation.target import EvalTask, Target, open_target
from sfrs.models import Adapter

__all__ = [
    "adapt",
    "Adapter",
    "AdaptConfig",
    "AdapterConfig",
    "AdaptLossConfig",
    "AdaptOptimConfig",
    "PseudoLabelConfig",
    "TargetConfig",
    "load_adapt_config",
    "validate_adapt_config",
    "open_target",
    "Target",
    "EvalTask",
    "FeatureCache",
    "pseudo_labels",
    "PseudoLabels",
    "whole_set_pseudo_labels",
    "restrict_to_batch",
    "symmetric_info_nce",
    "reconstruction_l1",
    "AdaptationLoop",
    "AdaptationError",
    "batch_rows",
    "gallery_rows",
    "lr_at",
    "mean_average_precision",
    "average_precision",
    "evaluate_task",
]
