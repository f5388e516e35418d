"""The configuration's sections as typed, frozen dataclasses.

The dataclass defaults ARE the defaults of the project (the synthetic-city demo);
``configs/synthetic.yaml`` spells them out and a test keeps the two equal. Every other
YAML file only needs the keys it changes. Functions receive the section they need.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how ground truth is defined."""

    #: ``synthetic[:tiny|small|medium]``, a VG folder, or a NetVLAD ``.mat`` file.
    dataset: str = "synthetic:small"
    #: root of the images referenced by a ``.mat`` file (unused otherwise).
    images_root: Optional[str] = None
    #: a database image within this distance of a training query is a positive.
    train_positive_radius: float = 10.0
    #: evaluation positives; training negatives are never closer than this.
    eval_positive_radius: float = 25.0
    #: images per batch during descriptor extraction.
    batch_size: int = 32
    #: DataLoader worker processes (0 = load in the main process).
    num_workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Backbone + aggregation head; travels inside every checkpoint."""

    backbone: str = "small"
    #: where a ``timm:`` backbone is cut: ``{blocks: N}`` (ViTs) or ``{stage: S}`` (CNNs);
    #: other backbones take none.
    backbone_options: Dict[str, Any] = field(default_factory=dict)
    #: ``imagenet``, ``none`` or a path to a local state dict.
    pretrained: str = "none"
    #: ``default`` (reference choice per backbone), ``all``, ``none`` or ``last:N``.
    trainable: str = "default"
    head: str = "netvlad"
    #: keyword arguments of the head constructor (e.g. ``clusters`` for NetVLAD).
    head_options: Dict[str, Any] = field(default_factory=lambda: {"clusters": 16})
    #: network input (height, width); images are resized to it.
    input_size: Tuple[int, int] = (96, 128)
    #: normalisation; ``None`` takes the backbone's own constants.
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    #: local descriptors sampled per image / images used for the NetVLAD k-means init.
    init_descriptors_per_image: int = 100
    init_images: int = 500
    #: training: images per chunk through the backbone's frozen layers, which run without
    #: keeping activations (0 = sized from the input: one 480x640 image through VGG16).
    frozen_chunk: int = 0
    #: training: recompute the trainable layers' activations in the backward pass instead
    #: of keeping them (less memory, one more forward of those layers; for the largest models).
    checkpoint_activations: bool = False


@dataclass(frozen=True)
class EvalConfig:
    """Full-database Recall@N evaluation."""

    recall_at: Tuple[int, ...] = (1, 5, 10, 20)
    #: faiss index factory string ("Flat", "IVF1024,Flat", "HNSW32", ...).
    index: str = "Flat"
    #: PCA-whitening output dimension (0 = none), fitted on training descriptors.
    pca_dim: int = 0
    #: training descriptors used to fit PCA-whitening.
    pca_samples: int = 10000
    #: arithmetic of descriptor extraction: ``fp32``, ``bf16`` or ``fp16`` (autocast;
    #: descriptors stay float32, L2-normalised in float32).
    precision: str = "fp32"


@dataclass(frozen=True)
class MiningConfig:
    """Training tuples (SFRS §3.1): query, best positive, hard negatives, difficult positives."""

    #: hard negatives per tuple (reference: 10).
    negatives: int = 5
    #: random database images (outside the eval radius) searched for hard negatives
    #: (reference: 1,000; the synthetic city aliases so much that its hardest negatives
    #: are near-copies which stall a network trained from scratch).
    negative_pool: int = 100
    #: keep each query's previous hardest negatives in its pool across generations
    #: (reference) instead of starting every generation with an empty memory.
    keep_negatives_across_generations: bool = True
    #: difficult positives per tuple (reference: 10).
    difficult_positives: int = 5
    #: feature-nearest positives re-ranked to choose the difficult ones (reference: 20).
    positive_candidates: int = 10
    #: who picks the difficult positives: ``student`` (reference: the current student's
    #: descriptor cache, at every refresh, among the teacher-labelled positives) or
    #: ``teacher`` (the teacher, once per generation).
    difficult_positives_by: str = "student"
    #: positives per query the teacher labels, the feature-nearest in its space (0 = every
    #: positive within the training radius; with ``difficult_positives_by: teacher`` only
    #: the chosen ones are labelled).
    teacher_candidates: int = 0
    rerank: bool = True
    rerank_k1: int = 20
    rerank_k2: int = 1
    rerank_lambda: float = 0.1
    #: distances re-ranking works on: ``reference`` (squared distances squared again and
    #: divided by their row maximum, as the reference) or ``squared``.
    rerank_distance: str = "reference"
    #: training queries between two re-encodings of the descriptor cache (reference: 1,000).
    cache_refresh: int = 1000


@dataclass(frozen=True)
class OptimConfig:
    #: ``sgd`` (reference, lr 0.001, for ImageNet-initialised backbones), ``adam`` or
    #: ``adamw``; the synthetic demo trains its small CNN from scratch with Adam 1e-4.
    optimizer: str = "adam"
    lr: float = 0.0001
    momentum: float = 0.9
    weight_decay: float = 0.001
    #: step schedule inside a generation: lr *= gamma every ``lr_step_epochs`` epochs.
    #: The reference's step never fires inside a 5-epoch generation (constant lr).
    lr_step_epochs: int = 5
    lr_gamma: float = 0.5
    #: training tuples per optimiser step (reference: 4, one per GPU).
    tuples_per_step: int = 4
    #: tuples through the network at once on each process; a step accumulates the
    #: gradients of its passes, which equal the whole step's (0 = all of a step at once).
    #: Batch norm in training mode (trainable ResNet stages) normalises each pass with its
    #: own statistics instead of the step's.
    tuples_per_pass: int = 0
    #: gradient-norm clipping (0 = off).
    grad_clip: float = 0.0


def _default_terms() -> Dict[str, Dict[str, Any]]:
    return {"hard": {"weight": 1.0}, "soft": {"weight": 1.0}}


@dataclass(frozen=True)
class LossConfig:
    """The objective: a weighted sum of registered loss terms (``sfrs.training.terms``)."""

    #: similarity = dot product of L2-normalised descriptors / temperature, shared by the
    #: SFRS terms (SARE and the student side of the soft region loss).
    temperature: float = 0.07
    #: term name -> ``{weight: w, <option>: value}``. ``hard`` (SARE/triplet on the best
    #: positive and hard negatives) and ``soft`` (SFRS soft region labels; its weight is
    #: multiplied by each generation's ``soft_weight``) are terms like any other; a term's
    #: options are those of its options dataclass (unknown ones are rejected).
    terms: Dict[str, Dict[str, Any]] = field(default_factory=_default_terms)


@dataclass(frozen=True)
class GenerationConfig:
    """One generation of SFRS training (a schedule entry; index = generation)."""

    epochs: int = 1
    #: weight of the soft region loss (needs labels, so 0 in generation 0).
    soft_weight: float = 0.0
    #: temperature of the teacher's soft labels supervising this generation.
    teacher_temperature: float = 0.07
    #: ``reinit`` (fresh weights + k-means, as the reference) or ``continue`` from the teacher.
    student_init: str = "reinit"


def _reference_generations() -> List[GenerationConfig]:
    return [
        GenerationConfig(epochs=1, soft_weight=0.0, teacher_temperature=0.07),
        GenerationConfig(epochs=5, soft_weight=0.5, teacher_temperature=0.07),
        GenerationConfig(epochs=5, soft_weight=0.5, teacher_temperature=0.06),
        GenerationConfig(epochs=5, soft_weight=0.5, teacher_temperature=0.05),
    ]


@dataclass(frozen=True)
class AugmentConfig:
    #: ColorJitter(brightness, contrast, saturation, hue) on training images (reference:
    #: 0.7, 0.7, 0.7, 0.5; on the synthetic city, where colour identifies facades, strong
    #: hue jitter keeps a network trained from scratch at chance level).
    color_jitter: Tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.0)


@dataclass(frozen=True)
class TrainConfig:
    generations: List[GenerationConfig] = field(default_factory=_reference_generations)
    #: optimiser steps between two resumable checkpoints (0 = only at epoch ends).
    checkpoint_every: int = 50
    #: split and Recall@N (as a string key) used to choose ``best.pt``; never the test split.
    val_split: str = "val"
    test_split: str = "test"
    best_metric: str = "5"
    #: training queries used per epoch (0 = all kept queries).
    queries_per_epoch: int = 0
    #: retrieval examples drawn into TensorBoard after each epoch.
    tensorboard_examples: int = 4
    #: a model file whose weights replace the fresh initialisation (fresh weights +
    #: NetVLAD k-means) wherever a student is initialised, e.g. a self-supervised
    #: pre-training to fine-tune; its architecture must equal ``model``'s.
    init_from: Optional[str] = None
    #: arithmetic of the training steps: ``fp32``, ``bf16`` or ``fp16`` (autocast; fp16 on
    #: CUDA scales the loss with a GradScaler).
    precision: str = "fp32"


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    #: Python modules imported before training, e.g. to register loss terms of your own.
    plugins: List[str] = field(default_factory=list)


