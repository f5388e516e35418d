"""Which data sets a cross-dataset run evaluates: every one found under the root, or the
``--datasets`` entries (benchmark names, folder names under the root, paths)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from sfrs.data import KNOWN_DATASETS, DatasetLocation, canonical_name, dataset_spec_help, find_dataset_at, find_datasets
from sfrs.errors import ConfigError


@dataclass
class Selection:
    """``locations`` to evaluate (name -> where), ``skipped`` benchmarks (known names not
    found under the root), ``failed`` entries (a folder or file no reader opens -> why)."""

    locations: Dict[str, DatasetLocation] = field(default_factory=dict)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    #: every data set found under the root (candidates for the PCA's training split).
    found: Dict[str, DatasetLocation] = field(default_factory=dict)

    def add(self, location: DatasetLocation) -> None:
        other = self.locations.get(location.name)
        if other is not None and other.path != location.path:
            raise ConfigError(f"--datasets: two data sets named '{location.name}' ({other.path} and {location.path})")
        self.locations[location.name] = location


def select_datasets(names: Optional[Sequence[str]], root: Union[str, Path]) -> Selection:
    """What to evaluate under ``root``.

    Without ``names``: every data set found (:func:`sfrs.data.find_datasets`: known
    benchmarks and any other folder or ``.mat`` a reader opens), and the known benchmarks
    missing are listed as skipped. Each name is, in this order: a known benchmark name or
    alias (skipped when not found), a data set found under its folder name (``my_city``),
    a folder or file under the root, or a path.

    Raises:
        ConfigError: a name that is none of these (probably a typo), or two data sets of
            the same name.
        DataError: ``root`` is not a folder.
    """
    root = Path(root).expanduser()
    found = find_datasets(root)
    selection = Selection(found=found)
    if not names:
        for location in found.values():
            selection.add(location)
        selection.skipped = [name for name in KNOWN_DATASETS if name not in found]
        return selection
    for name in names:
        canonical = canonical_name(name)
        if canonical is not None and Path(name).name == name:
            if canonical in found:
                selection.add(found[canonical])
            elif canonical not in selection.skipped:
                selection.skipped.append(canonical)
        elif name in found:
            selection.add(found[name])
        else:
            _add_path(selection, name, root)
    return selection


def _add_path(selection: Selection, name: str, root: Path) -> None:
    candidate = root / name if (root / name).exists() else Path(name).expanduser()
    if not candidate.exists():
        raise ConfigError(
            f"--datasets: unknown data set '{name}': not a known benchmark ({', '.join(KNOWN_DATASETS)}), "
            f"a folder under {root} or a path"
        )
    at = find_dataset_at(candidate)
    if not at:
        selection.failed[name] = f"{candidate}: no data set a reader opens ({dataset_spec_help()})"
    for location in at.values():
        selection.add(location)
