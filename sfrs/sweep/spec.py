"""What a sweep is: its grid, its seeds and the ``sfrs-train`` options common to every run;
the runs it plans, each with the exact ``sfrs-train`` arguments and configuration; and
``sweep.json``, which ties an output folder to one sweep.

A run's configuration is built from the same pieces ``sfrs-train`` would receive (the
common options, ``--set`` of the grid values after the common ``--set``, ``--seed``), so a
run trained in this process and one trained by ``sfrs-train`` in a subprocess are the same.
"""
from __future__ import annotations

import importlib
import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from sfrs.config import Config, load_training_config
from sfrs.errors import ConfigError, DataError
from sfrs.sweep.grid import Configuration, GridAxis, configurations
from sfrs.utils.io import atomic_write_json

SWEEP_FILE = "sweep.json"
SWEEP_RECORD_FORMAT = "sfrs-sweep"
RUNS_FOLDER = "runs"


@dataclass(frozen=True)
class TrainOptions:
    """The ``sfrs-train`` options every run of a sweep shares (None / empty = not given)."""

    config_path: Optional[str] = None
    dataset: Optional[str] = None
    images_root: Optional[str] = None
    generations: Optional[int] = None
    epochs: Optional[int] = None
    init_from: Optional[str] = None
    precision: Optional[str] = None
    overrides: Tuple[str, ...] = ()
    deterministic: bool = False

    def __post_init__(self) -> None:
        for text in self.overrides:
            if text.split("=", 1)[0].strip() == "seed":
                raise ConfigError(f"--set {text}: the sweep sets the seed of each run; use --seeds or --seed-list")

    def argv(self) -> List[str]:
        """These options as ``sfrs-train`` arguments."""
        args: List[str] = []
        for flag, value in (("--config", self.config_path), ("--dataset", self.dataset),
                            ("--images-root", self.images_root), ("--generations", self.generations),
                            ("--epochs", self.epochs), ("--init-from", self.init_from),
                            ("--precision", self.precision)):
            if value is not None:
                args += [flag, str(value)]
        for text in self.overrides:
            args += ["--set", text]
        return args + (["--deterministic"] if self.deterministic else [])

    def build(self, extra_overrides: Sequence[str], seed: int) -> Config:
        """The validated configuration ``sfrs-train`` builds from these options plus
        ``--set`` ``extra_overrides`` and ``--seed seed``, its plugins imported and its loss
        terms checked (as ``sfrs-train`` checks them before opening data)."""
        config = load_training_config(
            self.config_path, list(self.overrides) + list(extra_overrides), generations=self.generations,
            epochs=self.epochs, dataset=self.dataset, images_root=self.images_root, seed=seed,
            init_from=self.init_from, precision=self.precision,
        )
        check_loss_terms(config)
        return config


def check_loss_terms(config: Config) -> None:
    """Import ``config.plugins`` and check ``loss.terms`` (names, weights, options).

    Raises:
        ConfigError: naming the plugin or the term key.
    """
    from sfrs.training.terms import term_specs

    for module in config.plugins:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"plugins: cannot import '{module}' ({exc})") from None
    term_specs(config.loss)


@dataclass(frozen=True)
class PlannedRun:
    """One run: ``configuration`` x ``seed`` in ``folder`` (relative to the sweep's output)."""

    configuration: Configuration
    seed: int
    folder: str
    config: Config = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.folder[len(RUNS_FOLDER) + 1:]

    def train_argv(self, options: TrainOptions, output: Path) -> List[str]:
        """The ``sfrs-train`` arguments that train this run."""
        sets = [arg for text in self.configuration.overrides for arg in ("--set", text)]
        return options.argv() + sets + ["--seed", str(self.seed), "--output", str(output / self.folder)]


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: ``axes`` x ``seeds``, every run with ``options``; ``transfer``: the
    datasets root each run's best model is evaluated on (None = no transfer)."""

    axes: Tuple[GridAxis, ...]
    seeds: Tuple[int, ...]
    options: TrainOptions = TrainOptions()
    transfer: Optional[str] = None

    def record(self) -> Dict[str, Any]:
        """What identifies the sweep in ``sweep.json`` (compared when a folder is reused)."""
        return {
            "grid": [{"key": a.key, "values": list(a.texts)} for a in self.axes],
            "seeds": list(self.seeds),
            "common": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.options).items()},
            "transfer": self.transfer,
        }

    def command_line(self, output: Union[str, Path], *, parallel: int = 1) -> str:
        """The ``sfrs-sweep`` command of this sweep (as recorded and shown in the summary)."""
        args = [arg for axis in self.axes for arg in ("--grid", axis.entry)]
        args += ["--seeds", str(len(self.seeds))] if list(self.seeds) == list(range(len(self.seeds))) else \
            ["--seed-list", ",".join(str(s) for s in self.seeds)]
        args += ["--output", str(output), *self.options.argv()]
        args += (["--parallel", str(parallel)] if parallel > 1 else []) + \
            (["--transfer", self.transfer] if self.transfer else [])
        return "sfrs-sweep " + " ".join(shlex.quote(arg) for arg in args)

    def plan(self) -> List[PlannedRun]:
        """Every run, its configuration built and validated (before any run starts).

        Raises:
            ConfigError: the common options are wrong, or a grid value or a combination is,
                naming the ``--grid`` entry or the configuration.
        """
        if not self.seeds:
            raise ConfigError("no seeds: give --seeds N (N >= 1) or --seed-list")
        self.options.build([], self.seeds[0])  # the common options alone: their own error
        for axis in self.axes:
            for text in axis.texts:
                try:
                    self.options.build([f"{axis.key}={text}"], self.seeds[0])
                except ConfigError as exc:
                    raise ConfigError(f"--grid '{axis.entry}': value '{text}': {exc}") from None
        runs = []
        for configuration in configurations(self.axes):
            for seed in self.seeds:
                try:
                    config = self.options.build(configuration.overrides, seed)
                except ConfigError as exc:
                    raise ConfigError(f"--grid configuration '{configuration.name}': {exc}") from None
                runs.append(PlannedRun(configuration, seed, f"{RUNS_FOLDER}/{configuration.name}/seed{seed}", config))
        return runs


def claim_output(output: Path, spec: SweepSpec, command: str) -> None:
    """Tie ``output`` to ``spec``: write ``sweep.json``, or check that the one there is
    this sweep's (the command line may differ in options that do not change a run). A
    record whose sweep has not started a run yet is replaced.

    Raises:
        ConfigError: the folder holds another sweep, naming what differs.
    """
    path = output / SWEEP_FILE
    record = spec.record()
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot be read as JSON ({' '.join(str(exc).split())})") from None
        differing = []
        for key, value in record.items():
            before = previous.get(key)
            if isinstance(value, dict) and isinstance(before, dict):
                differing += [(f"{key}.{k}", before.get(k), value.get(k)) for k in value if before.get(k) != value.get(k)]
            elif before != value:
                differing.append((key, before, value))
        started = (output / RUNS_FOLDER).is_dir() and any((output / RUNS_FOLDER).iterdir())
        if differing and started:
            detail = "; ".join(f"{key}: was {json.dumps(before)}, now {json.dumps(now)}" for key, before, now in differing)
            raise ConfigError(f"{path}: {output} holds a sweep with other arguments ({detail}); "
                              "rerun it with its own arguments or give another --output")
        record = {**previous, "command": command} if not differing else \
            {"format": SWEEP_RECORD_FORMAT, "version": 1, **record, "command": command}
    else:
        record = {"format": SWEEP_RECORD_FORMAT, "version": 1, **record, "command": command}
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
