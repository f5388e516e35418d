"""Per-benchmark evaluation conventions and discovery of benchmarks under a datasets root.

Each benchmark is evaluated the way its published numbers were obtained: positive radius,
query resizing, spatial non-maximum suppression. See ``shared/spec/datasets.md``.

- :func:`conventions_for` maps a data set name (canonical or a common folder name) to a
  frozen :class:`DatasetConventions`.
- :func:`find_datasets` lists the benchmarks present under a root folder, each as a
  :class:`DatasetLocation` whose ``spec`` / ``split`` / ``images_root`` go straight into
  :func:`sfrs.data.formats.open_dataset`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from sfrs.errors import DataError

PathLike = Union[str, Path]

# The resize modes of sfrs.data.images.build_transform (kept here to avoid importing torch).
QUERY_RESIZE_MODES = ("squash", "shorter_side")
LAYOUTS = ("vg", "mat", "msls")


@dataclass(frozen=True)
class DatasetConventions:
    """How a benchmark is evaluated.

    Attributes:
        name: canonical data set name (``pitts30k``, ``tokyo247``...) or the name asked for.
        threshold_m: positive radius in metres (UTM or the data set's fake coordinates).
        query_resize: ``squash`` (to the model's input size) or ``shorter_side`` (keep the
            aspect ratio), as in :func:`sfrs.data.images.build_transform`.
        nms: apply spatial non-maximum suppression by ``Split.database_place_ids``
            (:func:`sfrs.retrieval.recall.spatial_nms`) before computing Recall@N.
        notes: what a report should say about the protocol.
    """

    name: str
    threshold_m: float = 25.0
    query_resize: str = "squash"
    nms: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        if self.query_resize not in QUERY_RESIZE_MODES:
            raise ValueError(
                f"{self.name}: query_resize '{self.query_resize}' not one of {', '.join(QUERY_RESIZE_MODES)}"
            )
        if not self.threshold_m > 0:
            raise ValueError(f"{self.name}: threshold_m must be positive, got {self.threshold_m}")


_CONVENTIONS: Dict[str, DatasetConventions] = {
    c.name: c
    for c in (
        DatasetConventions(
            "pitts30k",
            notes="NetVLAD protocol: positives within 25 m; test 10,000 database / 6,816 queries",
        ),
        DatasetConventions(
            "pitts250k",
            notes="NetVLAD protocol: positives within 25 m; test 83,952 database / 8,280 queries",
        ),
        DatasetConventions(
            "tokyo247",
            query_resize="shorter_side",
            nms=True,
            notes=(
                "NMS by panorama place id: among the top results only the first hit per database "
                "panorama is kept; queries resized keeping aspect ratio (shorter side 640 in the "
                "reference), not squashed; 75,984 database / 315 queries"
            ),
        ),
        DatasetConventions(
            "msls_val",
            notes=(
                "official protocol: 740 queries, 18,871 database images (cph + sf); the converted "
                "VG-folder version has ~11k queries: the split's protocol line says which"
            ),
        ),
        DatasetConventions(
            "nordland",
            notes=(
                "no GPS: fake coordinates, frame index * 2.38 m in the north slot, so +-10 frames "
                "fall within 25 m; several versions exist: name the one used"
            ),
        ),
        DatasetConventions(
            "sped",
            notes="no GPS: fake coordinates, id * 1000 in the north slot, so only the same id is within 25 m",
        ),
        DatasetConventions(
            "amstertime",
            notes="no GPS: fake coordinates, id * 1000 in the north slot, so only the same id is within 25 m",
        ),
        DatasetConventions("st_lucia", notes="VG-folder version; positives within 25 m"),
    )
}

KNOWN_DATASETS: Dict[str, List[str]] = {
    "pitts30k": ["pitts30k", "pittsburgh30k", "pitts_30k", "pittsburgh_30k"],
    "pitts250k": ["pitts250k", "pittsburgh250k", "pitts_250k", "pittsburgh_250k"],
    "tokyo247": ["tokyo247", "tokyo24_7", "tokyo_24_7", "tokyo24-7"],
    "msls_val": ["msls_val", "msls", "mapillary_sls"],
    "nordland": ["nordland"],
    "sped": ["sped"],
    "amstertime": ["amstertime", "amster_time"],
    "st_lucia": ["st_lucia", "stlucia"],
}

_DEFAULT_NOTES = "no benchmark-specific conventions known: positives within 25 m, queries squashed, no NMS"
_SPLIT_SUFFIX = re.compile(r"^(?P<base>.+?)[_-](?P<split>train|val|test)$")


def _normalise(name: str) -> str:
    """Lower case, letters and digits only: ``Tokyo_24-7`` -> ``tokyo247``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES: Dict[str, str] = {
    _normalise(alias): canonical for canonical, aliases in KNOWN_DATASETS.items() for alias in [canonical, *aliases]
}


def canonical_name(dataset_name: str) -> Optional[str]:
    """The canonical name of a known data set, from its name or a common folder/file name
    (case, ``_`` and ``-`` ignored; a trailing ``_train``/``_val``/``_test`` is tolerated)."""
    name = str(dataset_name).strip()
    found = _ALIASES.get(_normalise(name))
    if found is None:
        match = _SPLIT_SUFFIX.match(name)
        if match:
            found = _ALIASES.get(_normalise(match.group("base")))
    return found


def conventions_for(dataset_name: str) -> DatasetConventions:
    """Evaluation conventions of a benchmark; a 25 m / squash / no-NMS default for unknown names."""
    canonical = canonical_name(dataset_name)
    if canonical is None:
        return DatasetConventions(name=str(dataset_name), notes=_DEFAULT_NOTES)
    return _CONVENTIONS[canonical]


# -- discovery --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetLocation:
    """Where a benchmark lives on disk and how to open it.

    ``open_dataset(location.spec, location.split, location.images_root)`` opens it.

    Attributes:
        name: canonical data set name (a key of ``KNOWN_DATASETS``).
        spec: string accepted by :func:`sfrs.data.formats.open_dataset`.
        images_root: images folder of a ``.mat`` spec, else None.
        layout: ``vg``, ``mat`` or ``msls``.
        split: the split to evaluate (``test``; ``val`` for msls_val and for a VG folder
            that has no test split).
        path: the data set folder (vg, msls) or the ``.mat`` file.
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


def _vg_split(folder: Path, prefer: Tuple[str, ...]) -> Optional[str]:
    """The first split of ``prefer`` with both ``images/<split>/database`` and ``queries``."""
    for split in prefer:
        split_dir = folder / "images" / split
        if (split_dir / "database").is_dir() and (split_dir / "queries").is_dir():
            return split
    return None


def _mat_which_set(mat_path: Path) -> str:
    """``dbStruct.whichSet`` of a NetVLAD .mat file (for names without ``_<split>``)."""
    import scipy.io

    try:
        db_struct = scipy.io.loadmat(str(mat_path), simplify_cells=True)["dbStruct"]
        which = db_struct["whichSet"]
    except KeyError as exc:
        raise DataError(f"{mat_path}: no dbStruct.{exc.args[0]} (needed to know which split it describes)") from None
    except Exception as exc:  # scipy raises several types
        raise DataError(f"{mat_path}: cannot read MATLAB file ({' '.join(str(exc).split())})") from None
    if not isinstance(which, str) or not which:
        raise DataError(f"{mat_path}: dbStruct.whichSet is not a single string")
    return which


def _mat_candidates(folder: Path) -> List[DatasetLocation]:
    """Known benchmarks described by ``<folder>/*.mat``; images root = ``folder``."""
    by_name: Dict[str, Dict[str, Path]] = {}
    for mat in sorted(folder.glob("*.mat")):
        if not mat.is_file():
            continue
        match = _SPLIT_SUFFIX.match(mat.stem)
        base, split = (match.group("base"), match.group("split")) if match else (mat.stem, None)
        canonical = _ALIASES.get(_normalise(base))
        if canonical is None:
            continue
        split = split or _mat_which_set(mat)
        by_name.setdefault(canonical, {}).setdefault(split, mat)
    found = []
    for canonical, splits in by_name.items():
        for split in ("test", "val"):
            if split in splits:
                mat = splits[split]
                found.append(DatasetLocation(canonical, str(mat), str(folder), "mat", split, mat))
                break
    return found


def _msls_candidate(folder: Path) -> Optional[DatasetLocation]:
    """MSLS native layout with both validation cities (cph and sf) under ``train_val/``."""
    from sfrs.data.formats.msls import VAL_CITIES, is_msls_root

    if not is_msls_root(folder):
        return None
    if not all((folder / "train_val" / city).is_dir() for city in VAL_CITIES):
        return None
    return DatasetLocation("msls_val", f"msls:{folder}", None, "msls", "val", folder)


# Layout preference when a benchmark is found more than once: the native MSLS layout gives
# the official protocol; elsewhere the VG folder is the field's common format.
_PREFERENCE = {"msls_val": ("msls", "vg", "mat")}
_DEFAULT_PREFERENCE = ("vg", "mat", "msls")


def find_datasets(root: PathLike) -> Dict[str, DatasetLocation]:
    """Benchmarks present in the folders directly under ``root``.

    Recognised, per child folder (sorted by name):

    - a VG folder whose name is a known alias (``KNOWN_DATASETS``) and which has
      ``images/<split>/{database,queries}``: split ``test``, else ``val`` (``val`` first for
      msls_val);
    - NetVLAD ``.mat`` files whose stem (minus ``_train``/``_val``/``_test``) is a known
      alias, e.g. ``pitts30k_test.mat``, ``tokyo247.mat``, with the images in that same
      folder (its ``images/``, ``queries_real/``, ``query/``); the test file is preferred,
      else val; a file without a split suffix is opened to read ``whichSet``;
    - the MSLS native layout (``train_val/cph`` and ``train_val/sf``), whatever the folder
      name, as ``msls_val``.

    Other folders are ignored. When a benchmark is found more than once, the layout
    preference is msls > vg > mat for msls_val and vg > mat for the others, then the first
    folder by name.

    Returns:
        Canonical name -> :class:`DatasetLocation`, sorted by name.
    Raises:
        DataError: ``root`` is not a folder, or a candidate ``.mat`` without split suffix
            cannot be read.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: datasets root is not a folder")
    candidates: Dict[str, List[DatasetLocation]] = {}
    for folder in sorted(child for child in root.iterdir() if child.is_dir()):
        found: List[DatasetLocation] = []
        canonical = _ALIASES.get(_normalise(folder.name))
        if canonical is not None and (folder / "images").is_dir():
            prefer = ("val", "test") if canonical == "msls_val" else ("test", "val")
            split = _vg_split(folder, prefer)
            if split is not None:
                found.append(DatasetLocation(canonical, str(folder), None, "vg", split, folder))
        found.extend(_mat_candidates(folder))
        msls = _msls_candidate(folder)
        if msls is not None:
            found.append(msls)
        for location in found:
            candidates.setdefault(location.name, []).append(location)
    result: Dict[str, DatasetLocation] = {}
    for name in sorted(candidates):
        preference = _PREFERENCE.get(name, _DEFAULT_PREFERENCE)
        # sorted() is stable: folder order breaks ties within a layout.
        result[name] = sorted(candidates[name], key=lambda loc: preference.index(loc.layout))[0]
    return result
