"""The registered data set formats, and the entry points that choose one from a spec.

Adding a format: one module declaring a :class:`DatasetFormat`, and one entry in
``_FORMATS`` below (or :func:`register_format` from outside the package).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple, Union

from sfrs.data.formats.base import DatasetFormat
from sfrs.data.formats.exif_folder import EXIF_FOLDER
from sfrs.data.formats.gps_csv import GPS_CSV
from sfrs.data.formats.msls import MSLS
from sfrs.data.formats.netvlad_mat import NETVLAD_MAT
from sfrs.data.formats.synthetic_city import SYNTHETIC_CITY
from sfrs.data.formats.u1652 import U1652
from sfrs.data.formats.vg_folder import VG_FOLDER
from sfrs.data.geo import Split
from sfrs.errors import DataError

# Detection order: the first format whose detect() accepts a spec reads it. The VG folder
# accepts any folder, so a folder format with a stricter test (MSLS, University-1652, the EXIF
# folder's database/ + queries/ without a split level) goes before it. The same
# order is the preference when discovery finds a benchmark in several layouts: the native
# MSLS layout gives the official protocol; elsewhere the VG folder is the field's common format.
_FORMATS: List[DatasetFormat] = [SYNTHETIC_CITY, MSLS, U1652, EXIF_FOLDER, VG_FOLDER, NETVLAD_MAT, GPS_CSV]


def registered_formats() -> Tuple[DatasetFormat, ...]:
    """The formats in detection (and discovery preference) order."""
    return tuple(_FORMATS)


def register_format(dataset_format: DatasetFormat, before: Optional[str] = None) -> None:
    """Add a format, last or just before the format named ``before``.

    Raises:
        ValueError: a format of that name is already registered, or ``before`` is unknown.
    """
    names = [f.name for f in _FORMATS]
    if dataset_format.name in names:
        raise ValueError(f"a data set format named '{dataset_format.name}' is already registered")
    if before is None:
        _FORMATS.append(dataset_format)
    elif before in names:
        _FORMATS.insert(names.index(before), dataset_format)
    else:
        raise ValueError(f"no data set format named '{before}' (registered: {', '.join(names)})")


def unregister_format(name: str) -> DatasetFormat:
    """Remove the format called ``name`` and return it.

    Raises:
        ValueError: no format of that name.
    """
    for index, dataset_format in enumerate(_FORMATS):
        if dataset_format.name == name:
            return _FORMATS.pop(index)
    raise ValueError(f"no data set format named '{name}' (registered: {', '.join(f.name for f in _FORMATS)})")


def detect_format(spec: str) -> Optional[DatasetFormat]:
    """The first registered format that reads ``spec``, or None."""
    return next((f for f in _FORMATS if f.detect(spec)), None)


def _accepted_specs() -> str:
    return "; ".join(f.spec_help for f in _FORMATS)


def dataset_spec_help() -> str:
    """What ``--dataset`` accepts: one phrase per registered format, in detection order."""
    return f"One of: {_accepted_specs()}."


def _unrecognised(spec: str) -> str:
    """Why no format reads ``spec``, one line."""
    problem = "not a data set" if Path(spec).expanduser().exists() else "data set not found"
    return f"{spec}: {problem} (expected one of: {_accepted_specs()})"


def open_dataset(
    spec: Union[str, Path],
    split: str,
    images_root: Optional[Union[str, Path]] = None,
    protocol: Optional[str] = None,
) -> Split:
    """Open one split of a data set described by ``spec``.

    Args:
        spec: any spec of :func:`dataset_spec_help`: ``synthetic[:<size>]``, a VG folder, a
            NetVLAD ``.mat`` file, ``msls:<root>`` or an MSLS root folder...; ``{split}`` in
            the spec is replaced by ``split``.
        split: ``train``, ``val`` or ``test``. For a ``.mat`` file it must equal the file's
            ``whichSet`` (each .mat describes one split).
        images_root: image folder of a ``.mat`` spec (required there, unused otherwise).
        protocol: MSLS evaluation protocol, ``official`` (default) or ``all`` (see
            :func:`sfrs.data.formats.msls.read_msls`); ignored by the other formats.
    Raises:
        DataError: no format reads the spec (missing path or unknown kind of file), or the
            format's reader fails (e.g. a .mat file without ``images_root``).
    """
    spec = str(spec).replace("{split}", split)
    dataset_format = detect_format(spec)
    if dataset_format is None:
        raise DataError(_unrecognised(spec))
    return dataset_format.open(spec, split, None if images_root is None else str(images_root), protocol)


def describe_dataset_spec(spec: Union[str, Path]) -> str:
    """One human line saying how ``spec`` will be read (no file is opened).

    A path that does not exist (yet), e.g. a ``{split}`` template, is described by the format
    its name suggests (``.mat`` file, folder).
    """
    spec = str(spec)
    dataset_format = detect_format(spec)
    if dataset_format is None and not Path(spec).expanduser().exists():
        suffix = Path(spec).suffix.lower()
        dataset_format = next((f for f in _FORMATS if suffix in f.name_suffixes), None)
    return _unrecognised(spec) if dataset_format is None else dataset_format.describe(spec)
