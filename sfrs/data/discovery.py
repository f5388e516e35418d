"""Discovery of benchmarks under a datasets root, by asking every registered format.

Each :class:`~sfrs.data.formats.DatasetFormat` says what it finds in one folder; this module
walks the folders directly under the root and keeps one location per benchmark.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

from sfrs.data.formats import DatasetLocation, registered_formats
from sfrs.errors import DataError

PathLike = Union[str, Path]


def find_datasets(root: PathLike) -> Dict[str, DatasetLocation]:
    """Benchmarks present in the folders directly under ``root``.

    Every registered format looks at every child folder (sorted by name). The built-in ones
    recognise:

    - a VG folder whose name is a known alias (``KNOWN_DATASETS``) and which has
      ``images/<split>/{database,queries}``: split ``test``, else ``val`` (``val`` first for
      msls_val);
    - NetVLAD ``.mat`` files whose stem (minus ``_train``/``_val``/``_test``) is a known
      alias, e.g. ``pitts30k_test.mat``, ``tokyo247.mat``, with the images in that same
      folder (its ``images/``, ``queries_real/``, ``query/``); the test file is preferred,
      else val; a file without a split suffix is opened to read ``whichSet``;
    - the MSLS native layout (``train_val/cph`` and ``train_val/sf``), whatever the folder
      name, as ``msls_val``.

    When a benchmark is found more than once, the format registered first wins (msls > vg >
    mat), then the first folder by name.

    Returns:
        Canonical name -> :class:`DatasetLocation`, sorted by name.
    Raises:
        DataError: ``root`` is not a folder, or a candidate ``.mat`` without split suffix
            cannot be read.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: datasets root is not a folder")
    best: Dict[str, DatasetLocation] = {}
    rank: Dict[str, int] = {}
    for folder in sorted(child for child in root.iterdir() if child.is_dir()):
        for preference, dataset_format in enumerate(registered_formats()):
            for location in dataset_format.discover(folder):
                # Strictly better only: on a tie the earlier folder stays.
                if location.name not in best or preference < rank[location.name]:
                    best[location.name], rank[location.name] = location, preference
    return {name: best[name] for name in sorted(best)}


__all__ = ["find_datasets", "DatasetLocation"]
