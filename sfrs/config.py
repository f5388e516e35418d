"""Typed, frozen configuration built once from YAML + ``--set key=value`` overrides.

The dataclass defaults ARE the defaults of the project (the synthetic-city demo);
``configs/synthetic.yaml`` spells them out and a test keeps the two equal. Every other
YAML file only needs the keys it changes. Functions receive the section they need.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from sfrs.errors import ConfigError


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
    #: ``imagenet``, ``none`` or a path to a local state dict.
    pretrained: str = "none"
    #: ``default`` (reference choice per backbone), ``all`` or ``none``.
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


@dataclass(frozen=True)
class MiningConfig:
    """Training tuples (SFRS §3.1): query, best positive, hard negatives, difficult positives."""

    #: hard negatives per tuple (reference: 10).
    negatives: int = 5
    #: random database images (outside the eval radius) searched for hard negatives
    #: (reference: 1,000; the synthetic city aliases so much that its hardest negatives
    #: are near-copies which stall a network trained from scratch).
    negative_pool: int = 100
    #: difficult positives per tuple (reference: 10).
    difficult_positives: int = 5
    #: feature-nearest positives re-ranked to choose the difficult ones (reference: 20).
    positive_candidates: int = 10
    rerank: bool = True
    rerank_k1: int = 20
    rerank_k2: int = 1
    rerank_lambda: float = 0.1
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
    #: gradient-norm clipping (0 = off).
    grad_clip: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    #: hard (contrastive) loss: ``sare_ind``, ``sare_joint`` or ``triplet``.
    hard: str = "sare_ind"
    hard_weight: float = 1.0
    #: similarity = dot product of L2-normalised descriptors / temperature (student).
    temperature: float = 0.07
    #: triplet margin on L2 distances.
    margin: float = 0.1
    #: from this generation on, each negative is replaced by its region most similar
    #: to the anchor (SFRS §3.2; reference: 1).
    region_negatives_from: int = 1
    #: further weighted terms by registered name (``sfrs.training.objective.EXTRA_TERMS``).
    extra_terms: Dict[str, float] = field(default_factory=dict)


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


# --------------------------------------------------------------------------------------
# dict <-> dataclass with type checking


def to_dict(obj: Any) -> Any:
    """A plain YAML-serialisable structure (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config '{where or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key '{key}' (known here: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is Any:
        return value
    if origin in (Union, getattr(types, "UnionType", Union)):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"config key '{key}' has a wrong type")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{key}' must have {len(args)} items, got {len(value)}")
            items = [_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_type = args[0] if args else Any
            items = [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        value_type = args[1] if args else Any
        return {str(k): _coerce(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"config key '{key}': unsupported type {_type_name(tp)}")


# --------------------------------------------------------------------------------------
# YAML and overrides


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    return data


def merge(cls: type, base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge ``update`` into ``base`` following the dataclass ``cls``: a section (a nested
    dataclass) is merged key by key; any other value, including a free-form mapping such
    as ``model.head_options`` and lists, is replaced as a whole. Unknown keys are kept for
    :func:`from_dict` to reject with their full name."""
    hints = typing.get_type_hints(cls)
    out = dict(base)
    for key, value in update.items():
        field_type = hints.get(key)
        if dataclasses.is_dataclass(field_type) and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(field_type, out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> Tuple[List[str], Any]:
    """``"a.b=3"`` -> (["a", "b"], 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value '{raw}'") from None
    return key.split("."), value


def build_config(
    cls: type = Config,
    yaml_path: Optional[Union[str, Path]] = None,
    overrides: Sequence[str] = (),
    direct: Optional[Mapping[str, Any]] = None,
) -> Any:
    """Defaults <- YAML file <- ``direct`` dotted values (CLI flags) <- ``--set`` overrides."""
    data = to_dict(cls())
    if yaml_path is not None:
        data = merge(cls, data, load_yaml(yaml_path))
    for dotted, value in (direct or {}).items():
        if value is not None:
            data = _set_dotted(data, dotted.split("."), value)
    for text in overrides:
        path, value = parse_override(text)
        data = _set_dotted(data, path, value)
    return from_dict(cls, data)


def _set_dotted(data: Dict[str, Any], path: Sequence[str], value: Any) -> Dict[str, Any]:
    """Set ``value`` at ``path``; list items are addressed by index (``generations.1.epochs``)
    and ``generations.*.epochs`` sets the key in every item."""
    head, rest = path[0], list(path[1:])
    out = dict(data)
    if not rest:
        out[head] = value
        return out
    child = out.get(head)
    if isinstance(child, list):
        items = list(child)
        index = rest[0]
        if index == "*":
            targets = range(len(items))
        else:
            try:
                targets = [int(index)]
                items[targets[0]]
            except (ValueError, IndexError):
                raise ConfigError(
                    f"config key '{head}.{index}': index must be '*' or 0..{len(items) - 1}"
                ) from None
        for i in targets:
            if len(rest) == 1:
                items[i] = value
            else:
                if not isinstance(items[i], Mapping):
                    raise ConfigError(f"config key '{head}.{i}' is not a mapping")
                items[i] = _set_dotted(dict(items[i]), rest[1:], value)
        out[head] = items
        return out
    if child is not None and not isinstance(child, Mapping):
        raise ConfigError(f"config key '{head}' is a value, not a section")
    out[head] = _set_dotted(dict(child or {}), rest, value)
    return out


def save_yaml(config: Any, path: Union[str, Path]) -> None:
    from sfrs.utils.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False))


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


# --------------------------------------------------------------------------------------
# schedule shortcuts and semantic validation


def with_schedule(config: "Config", generations: Optional[int] = None, epochs: Optional[int] = None) -> "Config":
    """``--generations N`` cuts the schedule or repeats its last entry; ``--epochs E``
    sets the epochs of every generation."""
    schedule = list(config.train.generations)
    if generations is not None:
        if generations < 1:
            raise ConfigError("--generations must be at least 1")
        schedule = schedule[:generations] + [schedule[-1]] * max(0, generations - len(schedule))
    if epochs is not None:
        if epochs < 1:
            raise ConfigError("--epochs must be at least 1")
        schedule = [dataclasses.replace(g, epochs=epochs) for g in schedule]
    return dataclasses.replace(config, train=dataclasses.replace(config.train, generations=schedule))


def validate_config(config: "Config") -> None:
    """Checks that types alone cannot express; one clear error per problem."""
    from sfrs.training.losses import HARD_LOSSES

    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(len(config.train.generations) >= 1, "train.generations must list at least one generation")
    for g, gen in enumerate(config.train.generations):
        require(gen.epochs >= 1, f"train.generations.{g}.epochs must be at least 1")
        require(gen.soft_weight >= 0, f"train.generations.{g}.soft_weight must be >= 0")
        require(gen.teacher_temperature > 0, f"train.generations.{g}.teacher_temperature must be > 0")
        require(gen.student_init in ("reinit", "continue"),
                f"train.generations.{g}.student_init must be 'reinit' or 'continue', got '{gen.student_init}'")
    require(config.train.generations[0].soft_weight == 0,
            "train.generations.0.soft_weight must be 0: generation 0 has no teacher")
    require(config.loss.hard in HARD_LOSSES,
            f"loss.hard '{config.loss.hard}' is unknown (choose {', '.join(sorted(HARD_LOSSES))})")
    require(config.loss.temperature > 0, "loss.temperature must be > 0")
    m = config.mining
    require(m.negatives >= 1, "mining.negatives must be at least 1")
    require(m.negative_pool >= m.negatives, "mining.negative_pool must be >= mining.negatives")
    require(m.positive_candidates >= m.difficult_positives >= 1,
            "mining.positive_candidates must be >= mining.difficult_positives >= 1")
    require(m.cache_refresh >= 1, "mining.cache_refresh must be at least 1")
    require(config.optim.tuples_per_step >= 1, "optim.tuples_per_step must be at least 1")
    require(config.optim.lr > 0, "optim.lr must be > 0")
    require(config.data.train_positive_radius <= config.data.eval_positive_radius,
            "data.train_positive_radius must not exceed data.eval_positive_radius")
    require(config.train.best_metric in {str(n) for n in config.eval.recall_at} | {"1", "5", "10", "20"},
            f"train.best_metric '{config.train.best_metric}' must be one of 1, 5, 10, 20")
