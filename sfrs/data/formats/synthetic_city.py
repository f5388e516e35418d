"""The ``synthetic[:size]`` spec: the procedural city, a VG folder generated and cached on first use."""
from __future__ import annotations

from typing import Optional

from sfrs.data.formats.base import DatasetFormat
from sfrs.data.formats.vg_folder import read_vg_split
from sfrs.data.geo import Split
from sfrs.errors import DataError

SCHEME = "synthetic"
DEFAULT_SIZE = "small"


def synthetic_size(spec: str) -> Optional[str]:
    """The size of a ``synthetic[:size]`` spec, or None when ``spec`` is not synthetic."""
    if spec == SCHEME:
        return DEFAULT_SIZE
    if spec.startswith(SCHEME + ":"):
        size = spec[len(SCHEME) + 1:]
        if not size:
            raise DataError(f"dataset '{spec}': missing size after '{SCHEME}:'")
        return size
    return None


def _detect(spec: str) -> bool:
    return spec == SCHEME or spec.startswith(SCHEME + ":")


def _describe(spec: str) -> str:
    try:
        size = synthetic_size(spec)
    except DataError as exc:
        return str(exc)
    return f"synthetic city '{size}' (VG folder generated and cached on first use)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    size = synthetic_size(spec)
    # Imported here: the generator is heavy and only needed for this spec.
    from sfrs.data.synthetic import ensure_synthetic

    root = ensure_synthetic(size=size)
    return read_vg_split(root, split, name=f"{SCHEME}:{size}")


SYNTHETIC_CITY = DatasetFormat(
    name="synthetic",
    # The sizes are spelled out rather than read from sfrs.data.synthetic, which would load the generator.
    spec_help="synthetic[:tiny|small|medium] (the procedural city, generated on first use)",
    detect=_detect,
    describe=_describe,
    open=_open,
)
