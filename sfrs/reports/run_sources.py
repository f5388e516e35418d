"""What ``sfrs-report`` reads: training run folders and sweep folders, told apart by their files.

A *run folder* (``sfrs-train --output``) holds ``results.json`` (``complete``,
``generations``, ``epochs``, ``best``, ``config``; :mod:`sfrs.training.report`) and
``config.yaml``; a run that has written only ``config.yaml`` has started and finished no
epoch. An ``sfrs-eval-all`` report (``report.json`` with ``datasets_root`` and
``results``, :func:`sfrs.reports.transfer.write_outputs`) in a sub-folder of a run is that
run's transfer result. A *sweep folder* (``sfrs-sweep --output``) holds ``summary.json``
(``"format": "sfrs-sweep-summary"``), whose run folders are read too when they exist
(their epochs, losses and configurations).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

from sfrs.config import load_yaml
from sfrs.errors import DataError, SfrsError

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.yaml"
SWEEP_SUMMARY_FILE = "summary.json"
SWEEP_FORMAT = "sfrs-sweep-summary"
#: the file name ``sfrs-eval-all`` gives its JSON report
TRANSFER_FILE = "report.json"


@dataclass(frozen=True)
class RunFolder:
    """One training run as it is on disk.

    Attributes:
        path: the run folder. results: its results.json ({} when not written yet).
        config: the nested configuration (config.yaml, else results.json's ``config``).
        transfer: eval-all reports found in its sub-folders: folder name ->
            {data set name: {"1": percent, ...}}.
    """

    path: Path
    results: Dict[str, Any]
    config: Dict[str, Any]
    transfer: Dict[str, Dict[str, Dict[str, float]]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.results.get("complete"))

    @property
    def status(self) -> str:
        """``complete``, ``incomplete (G of N generations, E epochs)`` or ``not started``."""
        if self.complete:
            return "complete"
        if not self.results:
            return "not started (no results.json)"
        planned = len(self.config.get("train", {}).get("generations", []) or [])
        done = len(self.results.get("generations", []))
        return f"incomplete ({done} of {planned or '?'} generations, {len(self.results.get('epochs', []))} epochs)"


@dataclass(frozen=True)
class SweepFolder:
    """A sweep's summary.json and the run folders of its configurations that exist
    (``runs[name]``, in the summary's order)."""

    path: Path
    summary: Dict[str, Any]
    runs: Dict[str, List[RunFolder]]


Source = Union[RunFolder, SweepFolder]


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_transfer_reports(run: Path) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Recall@N per data set of every ``sfrs-eval-all`` report in a sub-folder of ``run``."""
    found: Dict[str, Dict[str, Dict[str, float]]] = {}
    for report in sorted(run.glob(f"*/{TRANSFER_FILE}")):
        try:
            data = _read_json(report)
        except DataError:
            continue  # another tool's report.json: not ours to judge
        if "datasets_root" not in data or not isinstance(data.get("results"), dict):
            continue
        found[report.parent.name] = {
            name: {str(n): float(v) for n, v in result.get("recall", {}).items()}
            for name, result in data["results"].items()
        }
    return found


def read_run_folder(path: Union[str, Path]) -> RunFolder:
    """The run in ``path`` (which holds results.json or config.yaml).

    Raises:
        DataError: neither file is there, or one cannot be read.
    """
    path = Path(path)
    results_path, config_path = path / RESULTS_FILE, path / CONFIG_FILE
    if not results_path.is_file() and not config_path.is_file():
        raise DataError(f"{path}: not a training run folder (no {RESULTS_FILE} or {CONFIG_FILE})")
    results = _read_json(results_path) if results_path.is_file() else {}
    if config_path.is_file():
        try:
            config = load_yaml(config_path)
        except SfrsError as exc:
            raise DataError(f"{config_path}: {' '.join(str(exc).split())}") from None
    else:
        config = results.get("config") or {}
    return RunFolder(path=path, results=results, config=dict(config or {}), transfer=read_transfer_reports(path))


def read_sweep_folder(path: Union[str, Path]) -> SweepFolder:
    """The sweep in ``path`` (its summary.json) and the run folders of it that exist.

    Raises:
        DataError: summary.json is not an ``sfrs-sweep`` summary.
    """
    path = Path(path)
    summary = _read_json(path / SWEEP_SUMMARY_FILE)
    if summary.get("format") != SWEEP_FORMAT or not isinstance(summary.get("configurations"), list):
        raise DataError(f"{path / SWEEP_SUMMARY_FILE}: not an sfrs-sweep summary (format '{SWEEP_FORMAT}' "
                        "with a 'configurations' list)")
    runs: Dict[str, List[RunFolder]] = {}
    for configuration in summary["configurations"]:
        members = []
        for relative in configuration.get("runs", []):
            folder = path / relative
            if (folder / RESULTS_FILE).is_file() or (folder / CONFIG_FILE).is_file():
                try:
                    members.append(read_run_folder(folder))
                except DataError:
                    continue  # a run being written: the summary's numbers stand without it
        runs[str(configuration.get("name"))] = members
    return SweepFolder(path=path, summary=summary, runs=runs)


def read_source(path: Union[str, Path]) -> Source:
    """A run folder or a sweep folder, told apart by their files (a summary.json or
    results.json given as a file stands for its folder).

    Raises:
        DataError: ``path`` is neither, naming the path and what was looked for.
    """
    path = Path(path)
    if path.is_file() and path.name in (SWEEP_SUMMARY_FILE, RESULTS_FILE):
        path = path.parent
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() and (path / SWEEP_SUMMARY_FILE).is_file():
        return read_sweep_folder(path)
    if path.is_dir() and ((path / RESULTS_FILE).is_file() or (path / CONFIG_FILE).is_file()):
        return read_run_folder(path)
    raise DataError(f"{path}: neither a training run folder ({RESULTS_FILE} or {CONFIG_FILE}) "
                    f"nor a sweep folder ({SWEEP_SUMMARY_FILE})")


def _is_source(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in (SWEEP_SUMMARY_FILE, RESULTS_FILE, CONFIG_FILE))


def expand_parents(path: Union[str, Path]) -> List[Path]:
    """``path`` itself, or, for a folder that is no run or sweep folder but holds some
    (``runs/sare/`` with ``seed0/``, ``seed1/``...), those sub-folders in name order."""
    path = Path(path)
    if path.is_dir() and not _is_source(path):
        children = sorted(child for child in path.iterdir() if _is_source(child))
        if children:
            return children
    return [path]


def read_sources(paths: Sequence[Union[str, Path]]) -> List[Source]:
    """:func:`read_source` of each path, in order, a folder of run folders standing for
    them (:func:`expand_parents`); every path is checked before any figure is drawn."""
    if not paths:
        raise DataError("no run or sweep folder given")
    return [read_source(child) for p in paths for child in expand_parents(p)]


def flatten_config(config: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``; lists of tables by index
    (``train.generations.0.epochs``), lists of plain values kept whole (``[96, 128]``)."""
    flat: Dict[str, Any] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            flat.update(flatten_config(value, f"{prefix}{key}."))
        if not config and prefix:
            flat[prefix[:-1]] = {}
    elif isinstance(config, list) and any(isinstance(v, (dict, list)) for v in config):
        for i, value in enumerate(config):
            flat.update(flatten_config(value, f"{prefix}{i}."))
    else:
        flat[prefix[:-1]] = config
    return flat

