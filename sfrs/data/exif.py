"""The GPS position in a photo's EXIF (the GPSInfo IFD), read with Pillow.

Latitude and longitude are each up to three rationals, degrees, minutes, seconds
(``GPSLatitude``), with a reference letter giving the sign (``GPSLatitudeRef`` N/S,
``GPSLongitudeRef`` E/W), as the EXIF standard (2.3) defines its GPS attributes.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence, Tuple

from sfrs.errors import DataError

GPS_IFD = 0x8825
LATITUDE_REF, LATITUDE, LONGITUDE_REF, LONGITUDE = 1, 2, 3, 4
_NEGATIVE_REFS = {LATITUDE_REF: "S", LONGITUDE_REF: "W"}
_POSITIVE_REFS = {LATITUDE_REF: "N", LONGITUDE_REF: "E"}


def _degrees(value: Any, path: str, name: str) -> float:
    parts: Sequence[Any] = value if isinstance(value, (tuple, list)) else (value,)
    try:
        numbers = [float(part) for part in parts]
    except (TypeError, ValueError, ZeroDivisionError):
        numbers = []
    if not 1 <= len(numbers) <= 3 or not all(math.isfinite(n) for n in numbers):
        raise DataError(f"{path}: EXIF {name} is not degrees/minutes/seconds ({value!r})")
    return sum(n / 60 ** i for i, n in enumerate(numbers))


def _sign(gps: dict, tag: int, path: str) -> float:
    ref = gps.get(tag, "")
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    ref = str(ref).strip("\x00 ").upper()
    if ref == _NEGATIVE_REFS[tag]:
        return -1.0
    if ref == _POSITIVE_REFS[tag]:
        return 1.0
    name = "GPSLatitudeRef" if tag == LATITUDE_REF else "GPSLongitudeRef"
    raise DataError(f"{path}: EXIF {name} is {ref!r}, not {_POSITIVE_REFS[tag]} or {_NEGATIVE_REFS[tag]}")


def read_gps(path: str) -> Tuple[float, float]:
    """(latitude, longitude) in degrees of the photo at ``path``.

    Raises:
        DataError: the file is not an image Pillow reads, or its EXIF has no GPS position
            (one line naming the file and the missing or malformed tag).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            gps = dict(image.getexif().get_ifd(GPS_IFD))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read its EXIF ({exc})") from None
    if LATITUDE not in gps or LONGITUDE not in gps:
        hint = " (a VG file name: give the folder holding images/)" if os.path.basename(path).startswith("@") else ""
        raise DataError(f"{path}: no GPS position in its EXIF (GPSLatitude/GPSLongitude){hint}")
    latitude = _sign(gps, LATITUDE_REF, path) * _degrees(gps[LATITUDE], path, "GPSLatitude")
    longitude = _sign(gps, LONGITUDE_REF, path) * _degrees(gps[LONGITUDE], path, "GPSLongitude")
    return latitude, longitude
