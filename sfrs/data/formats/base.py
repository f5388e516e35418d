"""What a data set format declares, and what discovering one under a datasets root yields.

A format is one :class:`DatasetFormat` object in its own module, listed once in
:mod:`sfrs.data.formats.registry`; opening, describing, the ``--dataset`` help and the
discovery of benchmarks all read that list.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from sfrs.data.conventions import DatasetConventions, conventions_for
from sfrs.data.geo import Split


@dataclass(frozen=True)
class DatasetLocation:
    """Where a benchmark lives on disk and how to open it.

    ``open_dataset(location.spec, location.split, location.images_root)`` opens it.

    Attributes:
        name: canonical data set name (a key of ``KNOWN_DATASETS``) for a known benchmark,
            else the folder or file name the data set was found under (``my_city``).
        spec: string accepted by :func:`sfrs.data.open_dataset`.
        images_root: images folder of a ``.mat`` spec, else None.
        layout: name of the :class:`DatasetFormat` that found it (``vg``, ``mat``, ``msls``...).
        split: the split to evaluate (``test``; ``val`` for msls_val and for a VG folder
            that has no test split).
        path: the data set folder (vg, msls) or file (mat).
    """

    name: str
    spec: str
    images_root: Optional[str]
    layout: str
    split: str
    path: Path

    @property
    def conventions(self) -> DatasetConventions:
        return conventions_for(self.name)


# (spec, split, images_root, protocol) -> Split
Opener = Callable[[str, str, Optional[str], Optional[str]], Split]


def _discovers_nothing(folder: Path) -> List[DatasetLocation]:
    return []


@dataclass(frozen=True)
class DatasetFormat:
    """One on-disk format: how a spec is recognised, described, opened and discovered.

    Attributes:
        name: short name, also :attr:`DatasetLocation.layout` (``vg``, ``mat``, ``msls``...).
        spec_help: how a spec of this format is written, one phrase of the ``--dataset`` help,
            e.g. ``"a NetVLAD .mat file (with --images-root)"``.
        detect: spec -> True when this format reads it, judged from the string and from what
            exists on disk (a path format accepts only a path that exists). ``{split}`` is
            already replaced when opening.
        describe: spec -> one human line saying how it will be read; opens no file.
        open: (spec, split, images_root, protocol) -> :class:`Split`; raises DataError.
        discover: a folder directly under a datasets root -> the benchmarks it holds in this
            format (see :func:`sfrs.data.find_datasets`).
        name_suffixes: file-name extensions that identify this format when the path does not
            exist (yet), e.g. a ``{split}`` template; ``""`` stands for a folder name. Only
            used to describe a spec.
    """

    name: str
    spec_help: str
    detect: Callable[[str], bool]
    describe: Callable[[str], str]
    open: Opener
    discover: Callable[[Path], List[DatasetLocation]] = _discovers_nothing
    name_suffixes: Tuple[str, ...] = ()
