"""On-disk side of the synthetic city: VG file names, the manifest, atomic publication, cache.

A city is rendered into ``<output>.tmp-<pid>`` and renamed into place only when complete,
with ``city.json`` written last; so a directory at the final path with a matching
``city.json`` is always a complete city, whatever was interrupted before.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from PIL import Image

from sfrs.errors import DataError

PathLike = Union[str, Path]
MANIFEST = "city.json"
MANIFEST_FORMAT = "sfrs-synthetic-city"


def utm_to_latlon(easting: float, northing: float, zone: int, northern: bool = True) -> Tuple[float, float]:
    """WGS84 (latitude, longitude) in degrees of a UTM position (inverse transverse Mercator)."""
    k0, a, f = 0.9996, 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    ep2 = e2 / (1 - e2)
    x = easting - 500000.0
    y = northing if northern else northing - 10000000.0
    mu = y / k0 / (a * (1 - e2 / 4 - 3 * e2**2 / 64 - 5 * e2**3 / 256))
    e1 = (1 - math.sqrt(1 - e2)) / (1 + math.sqrt(1 - e2))
    phi1 = (
        mu
        + (3 * e1 / 2 - 27 * e1**3 / 32) * math.sin(2 * mu)
        + (21 * e1**2 / 16 - 55 * e1**4 / 32) * math.sin(4 * mu)
        + (151 * e1**3 / 96) * math.sin(6 * mu)
        + (1097 * e1**4 / 512) * math.sin(8 * mu)
    )
    sin1, cos1, tan1 = math.sin(phi1), math.cos(phi1), math.tan(phi1)
    n1 = a / math.sqrt(1 - e2 * sin1**2)
    t1 = tan1**2
    c1 = ep2 * cos1**2
    r1 = a * (1 - e2) / (1 - e2 * sin1**2) ** 1.5
    d = x / (n1 * k0)
    lat = phi1 - (n1 * tan1 / r1) * (
        d**2 / 2
        - (5 + 3 * t1 + 10 * c1 - 4 * c1**2 - 9 * ep2) * d**4 / 24
        + (61 + 90 * t1 + 298 * c1 + 45 * t1**2 - 252 * ep2 - 3 * c1**2) * d**6 / 720
    )
    lon = (d - (1 + 2 * t1 + c1) * d**3 / 6 + (5 - 2 * c1 + 28 * t1 - 3 * c1**2 + 8 * ep2 + 24 * t1**2) * d**5 / 120) / cos1
    return math.degrees(lat), (zone - 1) * 6 - 180 + 3 + math.degrees(lon)


def pano_id(*keys: Any) -> str:
    """A 22-character Street-View-like id, deterministic in ``keys`` (never contains '@')."""
    digest = hashlib.blake2b("/".join(str(k) for k in keys).encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def image_name(
    easting: float,
    northing: float,
    zone_number: int,
    zone_letter: str,
    heading_deg: float,
    pano: str,
    timestamp: str,
    note: str = "",
) -> str:
    """The 15-field VG file name ``@east@north@zone@letter@lat@lon@pano@tile@heading@pitch@roll@height@time@note@.jpg``."""
    lat, lon = utm_to_latlon(easting, northing, zone_number)
    fields = [
        f"{easting:010.2f}",
        f"{northing:010.2f}",
        str(zone_number),
        zone_letter,
        f"{lat:09.5f}",
        f"{lon:010.5f}",
        pano,
        "",
        str(int(round(heading_deg)) % 360),
        "",
        "",
        "",
        timestamp,
        note,
    ]
    return "@" + "@".join(fields) + "@.jpg"


def save_jpeg(image: Image.Image, path: Path, quality: int) -> None:
    """Write ``image`` as a baseline JPEG (no metadata, so the bytes depend on pixels only)."""
    image.save(path, format="JPEG", quality=quality)


def write_manifest(root: Path, manifest: Dict[str, Any]) -> None:
    """Write ``city.json``; sorted keys keep it byte-identical across runs."""
    data = dict(manifest, format=MANIFEST_FORMAT, complete=True)
    (root / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_manifest(root: Path, name: str = MANIFEST, manifest_format: str = MANIFEST_FORMAT) -> Optional[Dict[str, Any]]:
    """The manifest ``name`` of a complete generated set at ``root`` (default: the city's), or None."""
    try:
        data = json.loads((Path(root) / name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != manifest_format or data.get("complete") is not True:
        return None
    return data


def is_complete_city(root: PathLike, size: str, seed: int, version: int, occlusion: float = 0.0) -> bool:
    """True when ``root`` holds a complete city of exactly this size, seed, generator
    version and query occlusion (a manifest without one predates the knob: 0)."""
    data = read_manifest(Path(root))
    return (
        data is not None
        and data.get("size") == size
        and data.get("seed") == seed
        and data.get("generator_version") == version
        and float(data.get("parameters", {}).get("occlusion", 0.0)) == occlusion
    )


def temporary_sibling(output: Path) -> Path:
    """``<output>.tmp-<pid>``: same file system as ``output``, so the final rename is atomic."""
    return output.parent / f"{output.name}.tmp-{os.getpid()}"


def is_empty_dir(path: Path) -> bool:
    """True for an existing directory without entries."""
    return path.is_dir() and not any(path.iterdir())


def publish(tmp: Path, output: Path) -> bool:
    """Rename the finished ``tmp`` to ``output``.

    Returns:
        True when this call published it; False when ``output`` already exists and is not an
        empty directory (another process won the race): the caller then checks the winner.
    """
    try:
        os.replace(tmp, output)  # rename(2) replaces an empty directory atomically
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            return False
        raise DataError(f"{output}: cannot move the generated city into place ({exc.strerror})") from None
    return True


def remove_tree(path: Path) -> None:
    """Delete a temporary city; missing paths and errors are ignored (best effort clean-up)."""
    shutil.rmtree(path, ignore_errors=True)


def default_cache_dir() -> Path:
    """Cache root: ``$SFRS_CACHE``, else ``$XDG_CACHE_HOME/sfrs``, else ``~/.cache/sfrs``.

    The environment is read at call time, so tests and users can redirect it at any moment.
    """
    explicit = os.environ.get("SFRS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "sfrs"
    return Path.home() / ".cache" / "sfrs"
