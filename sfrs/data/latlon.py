"""WGS84 latitude/longitude -> UTM (easting, northing) in metres, for photos located by GPS.

All positions of a split must fall in one UTM zone and hemisphere: a :class:`Split` holds
plain planar coordinates, and two zones are two different planes, so a distance between
them means nothing. Forcing every photo into the majority's zone would keep the numbers
continuous, but its scale error grows with the distance from that zone's central meridian
and nothing would warn that the 25 m radius no longer is 25 m; a data set spanning zones is
refused instead, naming the first photo outside the first photo's zone.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np

from sfrs.errors import DataError

#: latitudes UTM covers (beyond: the polar UPS system).
LATITUDE_RANGE = (-80.0, 84.0)
LONGITUDE_RANGE = (-180.0, 180.0)


def check_latlon(latitude: float, longitude: float, where: str) -> None:
    """Raise a one-line DataError naming ``where`` when the position cannot be projected."""
    for name, value, (low, high) in (("latitude", latitude, LATITUDE_RANGE),
                                     ("longitude", longitude, LONGITUDE_RANGE)):
        if not math.isfinite(value) or not low <= value <= high:
            raise DataError(f"{where}: {name} {value} outside {low:g}..{high:g} (UTM's range)")


def utm_zone(latitude: float, longitude: float) -> str:
    """The UTM zone number and hemisphere of a position, e.g. ``"33N"`` (Norway's and
    Svalbard's exceptions included)."""
    import utm

    return f"{utm.latlon_to_zone_number(latitude, longitude)}{'N' if latitude >= 0 else 'S'}"


def to_utm(latlon: np.ndarray, where: Sequence[str]) -> Tuple[np.ndarray, str]:
    """UTM positions of one split's photos.

    Args:
        latlon: float array (N, 2) of (latitude, longitude) in degrees, WGS84.
        where: N labels naming each photo's source in errors (file, or file and line).
    Returns:
        float64 array (N, 2) of (easting, northing) in metres, and the zone (``"33N"``).
    Raises:
        DataError: a position outside UTM's range, or photos in two zones (one line
            naming the first photo outside the first photo's zone).
    """
    import utm

    latlon = np.asarray(latlon, dtype=np.float64).reshape(-1, 2)
    if len(latlon) == 0:
        return np.zeros((0, 2)), ""
    for (lat, lon), label in zip(latlon, where):
        check_latlon(float(lat), float(lon), label)
    first = utm_zone(*latlon[0])
    for (lat, lon), label in zip(latlon, where):
        zone = utm_zone(float(lat), float(lon))
        if zone != first:
            raise DataError(f"{label}: UTM zone {zone} differs from zone {first} of {where[0]}; "
                            "the photos of a split must lie in one zone (make one data set per zone)")
    # one hemisphere (checked above), so the latitudes' sign gives every photo the same false northing
    east, north, _, _ = utm.from_latlon(latlon[:, 0], latlon[:, 1], force_zone_number=int(first[:-1]))
    return np.stack([east, north], axis=1).astype(np.float64), first
