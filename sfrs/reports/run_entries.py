"""The rows of a run report: runs grouped by configuration, sweep configurations, their
recall statistics and how their configurations differ.

Run folders whose configurations are equal but for ``seed`` form one entry (the seeds of
one setting); a sweep contributes one entry per configuration with the statistics of its
summary.json. Every entry carries the same statistics blocks as ``sfrs-sweep``'s summary:
``{"val": {"1": {"mean", "std", "values"}, ...}, "test": {...}}``, ``std`` the sample
standard deviation (ddof = 1), None for one value. Only complete runs enter the statistics;
the others are listed with their status.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sfrs.reports.run_sources import RunFolder, Source, SweepFolder, flatten_config

#: Recall@N columns the report tabulates and plots
REPORT_NS = ("1", "5", "10")
SPLITS = ("val", "test")
#: config keys that differ between the seeds of one setting
SEED_KEYS = ("seed",)

Stat = Dict[str, Any]
StatBlock = Dict[str, Dict[str, Stat]]


def statistic(values: Sequence[float]) -> Stat:
    """``{"mean", "std" (ddof=1; None for one value), "values"}``; mean None when empty."""
    values = [float(v) for v in values]
    if not values:
        return {"mean": None, "std": None, "values": []}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def format_statistic(stat: Optional[Stat], digits: int = 1, one_value: str = "mean") -> str:
    """``"71.5 ± 2.1"``; for one value (no std) ``"71.5"`` (``one_value="mean"``) or
    ``"71.5 ± n/a"`` (``"n/a"``); ``"-"`` for none."""
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("std") is None:
        return f"{stat['mean']:.{digits}f}" + (" ± n/a" if one_value == "n/a" else "")
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _recall_block(recalls: Sequence[Optional[Dict[str, float]]]) -> Dict[str, Stat]:
    """{N: statistic over the runs that have a recall dict} for every N any of them has."""
    present = [r for r in recalls if r]
    keys = [n for n in REPORT_NS if any(n in r for r in present)]
    keys += sorted({n for r in present for n in r} - set(keys), key=int)
    return {n: statistic([r[n] for r in present if n in r]) for n in keys}


@dataclass
class ReportEntry:
    """One row of the report.

    Attributes:
        name: unique label. kind: ``runs`` (run folders) or ``sweep`` (a sweep configuration).
        runs: member run folders (all of them, complete or not; may be empty for a sweep
            whose runs are not on disk).
        config: flattened configuration shared by the members (keys on which they agree).
        config_known: False when only the sweep's varied values are known.
        finished: complete runs in the statistics.
        final / best: :data:`StatBlock` of the last generation and of ``best.pt``
            (``best.test`` = best.pt on test, measured at the end of training).
        generations: [{"generation": g, "val": {...}, "test": {...}}].
        transfer: {data set: {N: statistic}} of eval-all reports (or the sweep's block).
        seeds: the seeds of the complete runs (of the whole sweep for a sweep entry).
    """

    name: str
    kind: str
    runs: List[RunFolder]
    config: Dict[str, Any]
    config_known: bool = True
    finished: int = 0
    final: StatBlock = field(default_factory=dict)
    best: StatBlock = field(default_factory=dict)
    generations: List[Dict[str, Any]] = field(default_factory=list)
    transfer: Dict[str, Dict[str, Stat]] = field(default_factory=dict)
    source: str = ""
    seeds: List[Any] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "source": self.source, "finished": self.finished,
            "seeds": self.seeds,
            "runs": [{"path": str(r.path), "status": r.status} for r in self.runs],
            "final": self.final, "best": self.best, "generations": self.generations, "transfer": self.transfer,
        }


def _agreed_config(runs: Sequence[RunFolder]) -> Dict[str, Any]:
    """The flattened keys on which every run agrees; seeds are not configuration here
    (they are listed with the statistics they enter)."""
    flats = [flatten_config(r.config) for r in runs]
    if not flats:
        return {}
    return {k: v for k, v in flats[0].items()
            if k not in SEED_KEYS and all(k in f and f[k] == v for f in flats[1:])}


def _run_stats(entry: ReportEntry) -> None:
    """Fill the statistics of a ``runs`` entry from its complete members."""
    complete = [r.results for r in entry.runs if r.complete]
    entry.finished = len(complete)
    entry.seeds = [r.config.get("seed") for r in entry.runs if r.complete]
    last = [r["generations"][-1] if r.get("generations") else {} for r in complete]
    best = [r.get("best") or {} for r in complete]
    entry.final = {s: _recall_block([g.get(s) for g in last]) for s in SPLITS}
    entry.best = {s: _recall_block([b.get(s) for b in best]) for s in SPLITS}
    count = max((len(r.get("generations", [])) for r in complete), default=0)
    entry.generations = [
        {"generation": g, **{s: _recall_block([r["generations"][g].get(s) for r in complete
                                               if len(r["generations"]) > g]) for s in SPLITS}}
        for g in range(count)
    ]
    per_dataset: Dict[str, List[Dict[str, float]]] = {}
    for run in (r for r in entry.runs if r.complete):
        for folder, datasets in run.transfer.items():
            for dataset, recall in datasets.items():
                key = dataset if len(run.transfer) == 1 else f"{dataset} ({folder})"
                per_dataset.setdefault(key, []).append(recall)
    entry.transfer = {name: _recall_block(recalls) for name, recalls in per_dataset.items()}


def _common_parent(paths: Sequence[Path]) -> Path:
    try:
        return Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    except ValueError:  # different drives
        return Path("/")


def _group_runs(runs: Sequence[RunFolder]) -> List[List[RunFolder]]:
    """Runs equal but for :data:`SEED_KEYS`, in the order their first member was given."""
    groups: Dict[Tuple[Tuple[str, str], ...], List[RunFolder]] = {}
    for run in runs:
        flat = flatten_config(run.config)
        key = tuple(sorted((k, repr(v)) for k, v in flat.items() if k not in SEED_KEYS))
        if not run.config:  # nothing to compare: a run alone
            key = (("path", str(run.path)),)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def _group_name(members: Sequence[RunFolder], root: Path) -> str:
    relative = [Path(os.path.relpath(m.path.resolve(), root)) for m in members]
    if len(relative) > 1:
        shared = Path(os.path.commonpath([str(r) for r in relative]))
        if str(shared) not in ("", "."):
            return str(shared)
        return " + ".join(str(r) for r in relative)
    name = str(relative[0])
    return members[0].path.resolve().name if name == "." else name


def _sweep_entries(sweep: SweepFolder, prefix: str) -> List[ReportEntry]:
    entries = []
    for configuration in sweep.summary["configurations"]:
        name = str(configuration.get("name"))
        members = sweep.runs.get(name, [])
        values = dict(configuration.get("values") or {})
        config = {**_agreed_config(members), **values}
        entries.append(ReportEntry(
            name=f"{prefix}{name}", kind="sweep", runs=list(members), config=config, config_known=bool(members),
            finished=int(configuration.get("finished", 0)),
            final=configuration.get("final") or {}, best=configuration.get("best") or {},
            generations=list(configuration.get("generations") or []),
            transfer=configuration.get("transfer") or {}, source=str(sweep.path),
            seeds=list(sweep.summary.get("seeds") or []),
        ))
    return entries


def build_entries(sources: Sequence[Source]) -> List[ReportEntry]:
    """The report's rows: run folders grouped by configuration (seeds together), then
    each sweep's configurations (named ``<sweep folder>/<configuration>`` when several
    sweeps are reported)."""
    runs = [s for s in sources if isinstance(s, RunFolder)]
    sweeps = [s for s in sources if isinstance(s, SweepFolder)]
    entries: List[ReportEntry] = []
    if runs:
        root = _common_parent([r.path for r in runs]) if len(runs) > 1 else runs[0].path.resolve().parent
        for members in _group_runs(runs):
            entry = ReportEntry(name=_group_name(members, root), kind="runs", runs=members,
                                config=_agreed_config(members), config_known=bool(members[0].config),
                                source=", ".join(str(m.path) for m in members))
            _run_stats(entry)
            entries.append(entry)
    for sweep in sweeps:
        prefix = f"{sweep.path.resolve().name}/" if len(sweeps) > 1 or runs else ""
        entries.extend(_sweep_entries(sweep, prefix))
    _make_names_unique(entries)
    return entries


def _make_names_unique(entries: List[ReportEntry]) -> None:
    seen: Dict[str, int] = {}
    for entry in entries:
        count = seen.get(entry.name, 0)
        seen[entry.name] = count + 1
        if count:
            entry.name = f"{entry.name} ({count + 1})"


MISSING = object()


def config_differences(entries: Sequence[ReportEntry]) -> Tuple[Dict[str, List[Any]], Dict[str, Any]]:
    """(differences, common): ``differences[key]`` holds the value of each entry (or
    :data:`MISSING`) for every key whose values are not all equal; ``common`` the rest.

    A key absent from an entry whose configuration is known counts as a difference; an
    entry known only by its sweep values does not make the other keys differ.
    """
    keys: List[str] = []
    for entry in entries:
        keys += [k for k in entry.config if k not in keys]
    differences: Dict[str, List[Any]] = {}
    common: Dict[str, Any] = {}
    for key in keys:
        column = [entry.config.get(key, MISSING) for entry in entries]
        present = [v for v in column if v is not MISSING]
        missing_known = any(v is MISSING and e.config_known for v, e in zip(column, entries))
        if missing_known or any(v != present[0] for v in present[1:]):
            differences[key] = column
        else:
            common[key] = present[0]
    return differences, common

