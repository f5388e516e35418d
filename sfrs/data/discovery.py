"""Discovery of benchmarks under a datasets root, by asking every registered format.

Each :class:`~sfrs.data.formats.DatasetFormat` says what it finds in one folder; this module
walks the folders directly under the root and keeps one location per benchmark.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Union

from sfrs.data.formats import DatasetLocation, registered_formats
from sfrs.errors import DataError

PathLike = Union[str, Path]


def find_datasets(root: PathLike) -> Dict[str, DatasetLocation]:
    """Benchmarks present in the folders directly under ``root``.

    Every registered format looks at every child folder (sorted by name). The built-in ones
    recognise:

    - any VG folder with ``images/<split>/{database,queries}``: split ``test``, else ``val``
      (``val`` first for msls_val), named after the benchmark when the folder name is a
      known alias (``KNOWN_DATASETS``), else after the folder (``my_city``);
    - NetVLAD ``.mat`` files with the images in that same folder (its ``images/``,
      ``queries_real/``, ``query/``): a known stem (minus ``_train``/``_val``/``_test``),
      e.g. ``pitts30k_test.mat``, ``tokyo247.mat``, or any file holding a readable
      ``dbStruct`` (named after its stem); the test file is preferred, else val;
    - the MSLS native layout (``train_val/cph`` and ``train_val/sf``), whatever the folder
      name, as ``msls_val``.
    - a folder of photos with EXIF GPS tags in ``database/`` and ``queries/``, named after it;
    - each CSV of photos with GPS (header ``path,latitude,longitude,role[,split]``) in the
      folder, as ``<folder>_<file stem>`` (``<folder>`` for ``<folder>.csv``).

    When a benchmark is found more than once, the format registered first wins (msls > vg >
    mat, see the registry), then the first folder by name.

    Returns:
        Name (canonical for known benchmarks) -> :class:`DatasetLocation`, sorted by name.
    Raises:
        DataError: ``root`` is not a folder, or a candidate ``.mat`` without split suffix
            cannot be read.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: datasets root is not a folder")
    return _best_by_name(sorted(child for child in root.iterdir() if child.is_dir()))


def find_dataset_at(path: PathLike) -> Dict[str, DatasetLocation]:
    """The data sets at ``path``: a data set folder (as if it were a folder under a root), or
    a file one of them describes (a NetVLAD ``.mat``, images next to it). Empty when no
    registered format reads it.

    Raises:
        DataError: ``path`` does not exist.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _best_by_name([path])
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return {name: loc for name, loc in _best_by_name([path.parent]).items() if loc.path == path}


def _best_by_name(folders: List[Path]) -> Dict[str, DatasetLocation]:
    """Every registered format asked about each folder; per name the format registered
    first, then the first folder."""
    best: Dict[str, DatasetLocation] = {}
    rank: Dict[str, int] = {}
    for folder in folders:
        for preference, dataset_format in enumerate(registered_formats()):
            for location in dataset_format.discover(folder):
                # Strictly better only: on a tie the earlier folder stays.
                if location.name not in best or preference < rank[location.name]:
                    best[location.name], rank[location.name] = location, preference
    return {name: best[name] for name in sorted(best)}


__all__ = ["find_datasets", "find_dataset_at", "DatasetLocation"]
