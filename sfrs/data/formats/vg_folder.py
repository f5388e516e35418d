"""Reader of the "VG folder" format: ``images/<split>/{database,queries}/**/*.jpg``.

File names carry the metadata in ``@``-separated fields (Berton et al., "Deep Visual
Geo-localization Benchmark", CVPR 2022)::

    @UTM_east@UTM_north@UTM_zone_number@UTM_zone_letter@latitude@longitude@pano_id
    @tile_num@heading@pitch@roll@height@timestamp@note@.jpg

Only the two UTM fields are required. See ``shared/spec/datasets.md`` section 1.
:data:`VG_FOLDER` declares the format to the registry: any folder not claimed by a stricter
format is read as a VG folder.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from sfrs.data.conventions import canonical_name
from sfrs.data.formats.base import DatasetFormat, DatasetLocation
from sfrs.data.geo import Split
from sfrs.errors import DataError

PathLike = Union[str, Path]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SUBSETS = ("database", "queries")
_CANONICAL_SPLITS = ("train", "val", "test")
_PANO_FIELD = 6  # 0-based index of pano_id among the fields after the leading '@'


def _vg_fields(path: PathLike) -> List[str]:
    """The ``@`` fields of a VG file name, without the trailing extension part."""
    name = os.path.basename(os.fspath(path))
    if not name.startswith("@"):
        raise DataError(f"{path}: not a VG file name (it must start with '@' and carry '@east@north@...')")
    # "@e@n@...@note@.jpg".split("@") -> ["", e, n, ..., note, ".jpg"]
    return name.split("@")[1:-1]


def parse_vg_filename(path: PathLike) -> Tuple[float, float]:
    """UTM (easting, northing) in metres from a VG file name.

    Only the file name is parsed: a parent folder may itself contain ``@``.

    Raises:
        DataError: the name does not start with ``@`` or has no numeric UTM fields.
    """
    fields = _vg_fields(path)
    if len(fields) < 2:
        raise DataError(f"{path}: VG file name has no UTM east/north fields")
    try:
        east, north = float(fields[0]), float(fields[1])
    except ValueError:
        raise DataError(
            f"{path}: VG file name has non-numeric UTM fields ('{fields[0]}', '{fields[1]}')"
        ) from None
    if not (math.isfinite(east) and math.isfinite(north)):
        raise DataError(f"{path}: VG file name has non-finite UTM fields")
    return east, north


def _images_dir(dataset_root: PathLike) -> Path:
    """The ``images/`` folder of a data set given either its root or ``images/`` itself."""
    root = Path(dataset_root)
    if not root.is_dir():
        raise DataError(f"{root}: data set folder does not exist")
    if (root / "images").is_dir():
        return root / "images"
    # Accept the images/ folder itself: its children are split folders with database/queries.
    for child in root.iterdir():
        if child.is_dir() and any((child / subset).is_dir() for subset in SUBSETS):
            return root
    raise DataError(
        f"{root}: not a VG data set folder (expected {root / 'images'}/<split>/{{database,queries}})"
    )


def _dataset_name(images_dir: Path) -> str:
    return images_dir.resolve().parent.name if images_dir.name == "images" else images_dir.resolve().name


def list_vg_splits(dataset_root: PathLike) -> List[str]:
    """Splits present under ``images/``: train/val/test first (in that order), then others sorted."""
    images = _images_dir(dataset_root)
    found = [
        child.name
        for child in images.iterdir()
        if child.is_dir() and any((child / subset).is_dir() for subset in SUBSETS)
    ]
    known = [s for s in _CANONICAL_SPLITS if s in found]
    return known + sorted(s for s in found if s not in _CANONICAL_SPLITS)


def list_images(folder: Path) -> List[str]:
    """Absolute image paths under ``folder`` (recursively, following links), sorted by relative path."""
    relative = []
    for current, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        rel_dir = os.path.relpath(current, folder)
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                relative.append(rel)
    # Sorting by the '/'-joined relative path makes the order platform independent.
    relative.sort(key=lambda rel: rel.replace(os.sep, "/"))
    base = os.path.abspath(folder)
    return [os.path.join(base, rel) for rel in relative]


def _place_ids(paths: Sequence[str]) -> Optional[np.ndarray]:
    """int64 ids grouping database images by pano_id; None when no file name has one.

    Images without a pano_id (in a data set where others have one) get a place of their own.
    """
    panos = []
    for path in paths:
        fields = _vg_fields(path)
        panos.append(fields[_PANO_FIELD] if len(fields) > _PANO_FIELD else "")
    if not any(panos):
        return None
    ids: Dict[str, int] = {}
    result = np.empty(len(paths), dtype=np.int64)
    for i, (path, pano) in enumerate(zip(paths, panos)):
        key = pano if pano else "\0" + path
        result[i] = ids.setdefault(key, len(ids))
    return result


def read_vg_split(dataset_root: PathLike, split: str, name: Optional[str] = None) -> Split:
    """Read one split of a VG-folder data set.

    Args:
        dataset_root: the folder that contains ``images/`` (or the ``images/`` folder itself).
        split: ``train``, ``val``, ``test`` (any folder name under ``images/``).
        name: data set name for reports; default the name of the folder containing ``images/``.
    Returns:
        A :class:`Split` with absolute paths sorted by path relative to ``database/`` or
        ``queries/``, UTMs of shape (N, 2) / (Q, 2) and database place ids from pano_id.
    Raises:
        DataError: missing split folder, empty database or queries, bad file names.
    """
    images = _images_dir(dataset_root)
    split_dir = images / split
    if not split_dir.is_dir():
        raise DataError(
            f"{split_dir}: split '{split}' not found (splits present: {', '.join(list_vg_splits(images)) or 'none'})"
        )
    lists = {}
    for subset in SUBSETS:
        folder = split_dir / subset
        paths = list_images(folder) if folder.is_dir() else []
        if not paths:
            raise DataError(
                f"{folder}: no .jpg/.jpeg/.png images for split '{split}' "
                f"(splits present: {', '.join(list_vg_splits(images)) or 'none'})"
            )
        lists[subset] = paths

    def utm(paths: Sequence[str]) -> np.ndarray:
        return np.array([parse_vg_filename(p) for p in paths], dtype=np.float64).reshape(-1, 2)

    return Split(
        dataset=name if name is not None else _dataset_name(images),
        split=split,
        database_paths=lists["database"],
        query_paths=lists["queries"],
        database_utm=utm(lists["database"]),
        query_utm=utm(lists["queries"]),
        database_place_ids=_place_ids(lists["database"]),
        protocol=f"VG folder {split_dir} (database/ vs queries/, UTM from file names)",
    )


# -- the format ----------------------------------------------------------------------------


def _detect(spec: str) -> bool:
    return Path(spec).expanduser().is_dir()


def _describe(spec: str) -> str:
    return f"VG folder {spec} (images/<split>/{{database,queries}}, UTM from '@' file names)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    return read_vg_split(Path(spec).expanduser(), split)


def _split_with_images(folder: Path, prefer: Sequence[str]) -> Optional[str]:
    """The first split of ``prefer`` with both ``images/<split>/database`` and ``queries``."""
    for split in prefer:
        split_dir = folder / "images" / split
        if all((split_dir / subset).is_dir() for subset in SUBSETS):
            return split
    return None


def _discover(folder: Path) -> List[DatasetLocation]:
    """Any folder with ``images/<split>/{database,queries}``: split ``test``, else ``val``
    (``val`` first for msls_val: that benchmark is MSLS's validation set). A benchmark's
    folder name (``Pittsburgh30k``) gives its canonical name, any other name is kept."""
    if not (folder / "images").is_dir():
        return []
    name = canonical_name(folder.name, allow_split_suffix=False)
    split = _split_with_images(folder, ("val", "test") if name == "msls_val" else ("test", "val"))
    if split is None:
        return []
    return [DatasetLocation(name or folder.name, str(folder), None, "vg", split, folder)]


VG_FOLDER = DatasetFormat(
    name="vg",
    spec_help="a VG folder (<folder>/images/<split>/{database,queries})",
    detect=_detect,
    describe=_describe,
    open=_open,
    discover=_discover,
    name_suffixes=("",),
)
