"""Per-benchmark evaluation conventions and the names benchmarks go by.

Each benchmark is evaluated the way its published numbers were obtained: positive radius,
query resizing, spatial non-maximum suppression. See ``shared/spec/datasets.md``.
:func:`conventions_for` maps a data set name (canonical or a common folder name) to a
frozen :class:`DatasetConventions`; :func:`canonical_name` and :func:`split_suffix` read
the folder and file names that discovery (:mod:`sfrs.data.discovery`) meets.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

#: Tokyo 24/7 queries: the reference applies torchvision ``Resize(max(480, 640))`` to
#: queries of various sizes, so their *shorter* side becomes 640 (1,600x1,200 -> 853x640).
TOKYO247_QUERY_SHORTER_SIDE = 640


@dataclass(frozen=True)
class DatasetConventions:
    """How a benchmark is evaluated.

    Attributes:
        name: canonical data set name (``pitts30k``, ``tokyo247``...) or the name asked for.
        threshold_m: positive radius in metres (UTM or the data set's fake coordinates).
        query_resize: None = queries resized like database images (to the model's input
            size); N = queries keep their aspect ratio with a shorter side of N pixels.
        nms: apply spatial non-maximum suppression by ``Split.database_place_ids``
            (:func:`sfrs.retrieval.recall.spatial_nms`) before computing Recall@N.
        notes: what a report should say about the protocol.
        known: False for the default protocol given to a name no benchmark goes by.
    """

    name: str
    threshold_m: float = 25.0
    query_resize: Optional[int] = None
    nms: bool = False
    notes: str = ""
    known: bool = True

    def __post_init__(self) -> None:
        if self.query_resize is not None and not _is_pixel_count(self.query_resize):
            raise ValueError(f"{self.name}: query_resize must be None or a positive pixel count, got {self.query_resize!r}")
        if not self.threshold_m > 0:
            raise ValueError(f"{self.name}: threshold_m must be positive, got {self.threshold_m}")

    @property
    def source(self) -> str:
        """Where these values come from, as a report states it."""
        return f"conventions of {self.name}" if self.known else "default protocol"


def _is_pixel_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


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
            query_resize=TOKYO247_QUERY_SHORTER_SIDE,
            nms=True,
            notes=(
                "NMS by panorama place id: among the top results only the first hit per database "
                "panorama is kept; queries keep their aspect ratio with a shorter side of 640 "
                "(database images at the model's input size); 75,984 database / 315 queries"
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

_DEFAULT_NOTES = (
    "no benchmark-specific conventions known for this name: positives within 25 m, queries resized "
    "like database images, no NMS"
)
_SPLIT_SUFFIX = re.compile(r"^(?P<base>.+?)[_-](?P<split>train|val|test)$")


def _normalise(name: str) -> str:
    """Lower case, letters and digits only: ``Tokyo_24-7`` -> ``tokyo247``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES: Dict[str, str] = {
    _normalise(alias): canonical for canonical, aliases in KNOWN_DATASETS.items() for alias in [canonical, *aliases]
}


def canonical_name(dataset_name: str, allow_split_suffix: bool = True) -> Optional[str]:
    """The canonical name of a known data set, from its name or a common folder/file name
    (case, ``_`` and ``-`` ignored; a trailing ``_train``/``_val``/``_test`` is tolerated
    unless ``allow_split_suffix`` is False)."""
    name = str(dataset_name).strip()
    found = _ALIASES.get(_normalise(name))
    if found is None and allow_split_suffix:
        base, split = split_suffix(name)
        if split is not None:
            found = _ALIASES.get(_normalise(base))
    return found


def split_suffix(name: str) -> Tuple[str, Optional[str]]:
    """``pitts30k_test`` -> (``pitts30k``, ``test``); a name without ``_``/``-`` + split -> (name, None)."""
    match = _SPLIT_SUFFIX.match(name)
    return (match.group("base"), match.group("split")) if match else (name, None)


def conventions_for(dataset_name: str) -> DatasetConventions:
    """Evaluation conventions of a benchmark; for an unknown name the default protocol
    (25 m, queries resized like the database, no NMS; ``known`` False)."""
    canonical = canonical_name(dataset_name)
    if canonical is None:
        return DatasetConventions(name=str(dataset_name), notes=_DEFAULT_NOTES, known=False)
    return _CONVENTIONS[canonical]
