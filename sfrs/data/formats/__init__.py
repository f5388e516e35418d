"""One module per on-disk format, each declaring a :class:`DatasetFormat` (how a spec is
detected, described, opened and discovered under a datasets root), listed once in
:mod:`sfrs.data.formats.registry`.

Formats, in detection order: ``synthetic[:size]`` (:mod:`.synthetic_city`), MSLS native
layout (:mod:`.msls`), University-1652 (:mod:`.u1652`), photos with EXIF GPS tags
(:mod:`.exif_folder`), VG folder (:mod:`.vg_folder`), NetVLAD ``.mat`` (:mod:`.netvlad_mat`),
a CSV of photos with GPS positions (:mod:`.gps_csv`).
"""
from sfrs.data.formats.base import DatasetFormat, DatasetLocation
from sfrs.data.formats.registry import (
    dataset_spec_help,
    describe_dataset_spec,
    detect_format,
    open_dataset,
    register_format,
    registered_formats,
    unregister_format,
)

__all__ = [
    "open_dataset",
    "describe_dataset_spec",
    "dataset_spec_help",
    "detect_format",
    "DatasetFormat",
    "DatasetLocation",
    "register_format",
    "unregister_format",
    "registered_formats",
]
