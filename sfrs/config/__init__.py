"""Typed, frozen configuration built once from YAML + overrides and passed down explicitly.

    from sfrs.config import load_config
    config = load_config("configs/pitts30k_vgg16_netvlad.yaml", ["optim.lr=0.01"])

- :mod:`sfrs.config.schema`: the sections (dataclasses) and their defaults;
- :mod:`sfrs.config.build`: dict <-> dataclass with type checks, YAML, ``--set`` overrides;
- :mod:`sfrs.config.validate`: checks across keys and the schedule shortcuts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from sfrs.config.build import (
    build_config,
    dump_yaml,
    from_dict,
    load_yaml,
    merge,
    parse_override,
    save_yaml,
    to_dict,
)
from sfrs.config.schema import (
    AugmentConfig,
    Config,
    DataConfig,
    EvalConfig,
    GenerationConfig,
    LossConfig,
    MiningConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from sfrs.config.validate import validate_config, with_schedule

__all__ = [
    "AugmentConfig", "Config", "DataConfig", "EvalConfig", "GenerationConfig", "LossConfig",
    "MiningConfig", "ModelConfig", "OptimConfig", "TrainConfig",
    "build_config", "dump_yaml", "from_dict", "load_config", "load_training_config", "load_yaml", "merge", "parse_override",
    "save_yaml", "to_dict", "validate_config", "with_schedule",
]


def load_config(
    path: Optional[Union[str, Path]] = None,
    overrides: Sequence[str] = (),
    *,
    generations: Optional[int] = None,
    epochs: Optional[int] = None,
    direct: Optional[Mapping[str, Any]] = None,
) -> Config:
    """A validated :class:`Config`: defaults <- YAML ``path`` <- ``direct`` dotted values
    <- ``overrides`` (``"optim.lr=0.01"``), then the schedule shortcuts.

    Raises:
        ConfigError: unknown key, wrong type or inconsistent values, named in one line.
    """
    config = with_schedule(build_config(Config, path, overrides, direct=direct), generations=generations, epochs=epochs)
    validate_config(config)
    return config


def load_training_config(
    path: Optional[Union[str, Path]] = None,
    overrides: Sequence[str] = (),
    *,
    generations: Optional[int] = None,
    epochs: Optional[int] = None,
    dataset: Optional[str] = None,
    images_root: Optional[str] = None,
    seed: Optional[int] = None,
    init_from: Optional[str] = None,
    precision: Optional[str] = None,
) -> Config:
    """The configuration of ``sfrs-train``'s flags (``--dataset``, ``--seed`` ... given or
    None), the one way a training run's configuration is made from a command line
    (``sfrs-train`` and every run of ``sfrs-sweep``)."""
    return load_config(
        path, overrides, generations=generations, epochs=epochs,
        direct={"data.dataset": dataset, "data.images_root": images_root, "seed": seed,
                "train.init_from": init_from, "train.precision": precision},
    )
