"""``dataset_stats``: open each split of a data set, write ``stats.json``, ``stats.md`` and
the figures of every split found (``sfrs-data stats``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from sfrs.analysis import figures
from sfrs.analysis.stats import SplitStats, split_stats
from sfrs.data import describe_dataset_spec, open_dataset
from sfrs.errors import DataError
from sfrs.utils.io import atomic_write_json, atomic_write_text

SPLITS = ("train", "val", "test")
PathLike = Union[str, Path]


@dataclass(frozen=True)
class DatasetStats:
    """What :func:`dataset_stats` found and wrote.

    Attributes:
        splits: split name -> its statistics, in train/val/test order.
        skipped: split name -> why it was not opened (most often: it does not exist).
        files: every file written.
    """

    spec: str
    splits: Dict[str, SplitStats]
    skipped: Dict[str, str] = field(default_factory=dict)
    files: List[Path] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "dataset": self.spec,
            "splits": {name: stats.to_dict() for name, stats in self.splits.items()},
            "skipped_splits": dict(self.skipped),
        }


def open_splits(spec: str, splits: Optional[Sequence[str]], images_root: Optional[PathLike]):
    """The splits asked for (all must open) or, by default, those of train/val/test that exist.

    Raises:
        DataError: an asked split does not open, or none of train/val/test does.
    """
    opened, skipped = {}, {}
    for name in splits or SPLITS:
        try:
            opened[name] = open_dataset(spec, name, images_root)
        except DataError as exc:
            if splits:
                raise
            skipped[name] = str(exc)
    if not opened:
        # the same reason for every split (a missing data set) is given once
        reasons = list(dict.fromkeys(skipped.values()))
        detail = reasons[0] if len(reasons) == 1 else "; ".join(f"{n}: {r}" for n, r in skipped.items())
        raise DataError(f"no split of {', '.join(SPLITS)} opens: {detail}")
    return opened, skipped


def _triple(summary: dict) -> str:
    return " / ".join(f"{summary[key]:.1f}" for key in ("mean", "median", "max"))


def markdown_table(result: DatasetStats) -> str:
    """``stats.md``: one row per split."""
    lines = [
        f"# {result.spec}", "",
        f"{describe_dataset_spec(result.spec)}", "",
        ("| split | database | queries | radius | without positive | positives 10 m (mean / median / max) "
         "| positives 25 m (mean / median / max) | nearest database m (mean / median / max) | extent m (E x N) |"),
        "|---|---:|---:|---|---:|---|---|---|---|",
    ]
    for name, stats in result.splits.items():
        row = stats.to_dict()
        positives = [_triple(row["positives_per_query"][key]) for key in row["positives_per_query"]]
        extent = row["utm_extent"]
        lines.append(
            f"| {name} | {row['num_database']:,} | {row['num_queries']:,} "
            f"| {row['radius_m']:g} m ({row['radius_source']}) | {row['queries_without_positive']:,} "
            f"| {' | '.join(positives)} | {_triple(row['nearest_database_m'])} "
            f"| {extent['width_m']:,.0f} x {extent['height_m']:,.0f} |"
        )
    if result.skipped:
        lines += ["", "Splits skipped:", ""] + [f"- {name}: {reason}" for name, reason in result.skipped.items()]
    return "\n".join(lines) + "\n"


def dataset_stats(
    spec: PathLike,
    output: PathLike,
    splits: Optional[Sequence[str]] = None,
    images_root: Optional[PathLike] = None,
) -> DatasetStats:
    """Statistics and figures of a data set's splits, written under ``output``.

    Args:
        spec: any spec ``sfrs.data.open_dataset`` reads.
        splits: the splits to describe; default train, val and test, skipping those that
            do not exist (listed in ``stats.json`` under ``skipped_splits``).
        images_root: image folder of a ``.mat`` spec.
    Writes:
        ``stats.json``, ``stats.md`` and per split ``<split>_map.png``,
        ``<split>_positives.png``, ``<split>_nearest.png``, ``<split>_samples.png``.
    """
    spec = str(spec)
    opened, skipped = open_splits(spec, splits, images_root)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    result = DatasetStats(spec, {name: split_stats(split) for name, split in opened.items()}, skipped)
    for name, stats in result.splits.items():
        result.files.extend([
            figures.save_map(stats, output / f"{name}_map.png"),
            figures.save_positives_histogram(stats, output / f"{name}_positives.png"),
            figures.save_nearest_histogram(stats, output / f"{name}_nearest.png"),
            figures.save_samples(stats, output / f"{name}_samples.png"),
        ])
    atomic_write_json(output / "stats.json", result.to_dict())
    atomic_write_text(output / "stats.md", markdown_table(result))
    result.files[:0] = [output / "stats.json", output / "stats.md"]
    return result
