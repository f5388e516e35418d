"""A synthetic cross-view data set in the University-1652 layout: each block of a grid
district is one "building id", photographed from above (one north-up "satellite" tile
centred on the block) and by a drone around it (oblique views, headings within 45
degrees of north). Planning is :mod:`.cross_view_plan`.

No cross-view data set can be downloaded here; this one is small enough for tests
(``tiny``: seconds) and for a CPU demo of ``sfrs-adapt`` (``small``: a few minutes).
It reuses the street city's facade styles and facade drawing (:mod:`.facades`,
:mod:`.strips`) for the walls the drone sees, and its seeding and atomic publication.

World: per split a district (train and test, as University-1652's disjoint building
sets) of blocks on a grid of streets. A block holds one to four lots: buildings (a
facade style, floors, wall and roof colours, rooftop units, flat or gable roofs), small
parks with trees, or parking lots. The views differ the way real satellite and drone
images do: another sensor and time (sun direction, shadows, parked cars, tree colour,
colour balance, blur), nadir vs oblique geometry, north-up vs rotated by up to 45 degrees,
roofs only vs roofs and facades. Drawing is :mod:`.cross_view_render`.

Layout written (``shared/spec/datasets.md`` section 4; ids are 4-digit folder names)::

    <root>/train/drone/<id>/image-NN.jpeg       <root>/train/satellite/<id>/<id>.jpg
    <root>/test/query_drone/<id>/...            <root>/test/gallery_satellite/<id>/<id>.jpg
    <root>/test/query_satellite/<id>/<id>.jpg   <root>/test/gallery_drone/<id>/...
    <root>/cross_view.json                      manifest (size, seed, counts, version)

Test blocks without queries are gallery distractors, as University-1652's 250 extra
buildings. Same (size, seed, version) gives byte-identical files.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from sfrs.data.synthetic import writer
from sfrs.data.synthetic.cross_view_plan import (
    DRONE_VIEW, PLAN, SATELLITE_VIEW, SPLITS, CrossViewSize, District, get_cross_view_size, plan_district, query_blocks,
)
from sfrs.data.synthetic.seeding import rng_for
from sfrs.errors import DataError

PathLike = Union[str, Path]

CROSS_VIEW_VERSION = 2  # 2: drone headings within 90 degrees
MANIFEST = "cross_view.json"
MANIFEST_FORMAT = "sfrs-synthetic-cross-view"#: headings of the drone views around a block. University-1652's drones circle the building
#: (360); the small CNNs trainable here are far from rotation invariant (with 360 a frozen
#: street-view model finds 20% R@1 drone -> satellite on 64 blocks, with 90 about 29%,
#: the regime of the foundation-model features the method was designed for).
DRONE_HEADING_SPREAD_DEG = 90.0
# -- writing -----------------------------------------------------------------------------------


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"synthetic cross-view seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def read_cross_view_manifest(root: PathLike) -> Optional[Dict]:
    """The manifest of a complete cross-view set at ``root``, or None."""
    return writer.read_manifest(Path(root), MANIFEST, MANIFEST_FORMAT)


def _is_complete(root: Path, size: str, seed: int) -> bool:
    data = read_cross_view_manifest(root)
    return data is not None and (data.get("size"), data.get("seed"), data.get("version")) == (size, seed, CROSS_VIEW_VERSION)


def _write_split(root: Path, size: CrossViewSize, seed: int, district: District, bar) -> Dict[str, int]:
    from sfrs.data.synthetic import cross_view_render as render

    split_index = SPLITS.index(district.split)
    queries = {b.id for b in query_blocks(size, district, seed)}
    scene = render.Scene(district, rng_for(seed, PLAN, split_index, 3))
    counts: Dict[str, int] = {}

    def save(image, folder: str, block_id: str, name: str) -> None:
        path = root / district.split / folder / block_id / name
        path.parent.mkdir(parents=True, exist_ok=True)
        writer.save_jpeg(image, path, render.JPEG_QUALITY)
        counts[folder] = counts.get(folder, 0) + 1

    for index, block in enumerate(district.blocks):
        satellite = render.satellite_tile(scene, block, size.image_px, rng_for(seed, SATELLITE_VIEW, split_index, index))
        drones = [
            render.drone_view(scene, block, size.image_px, rng_for(seed, DRONE_VIEW, split_index, index, view),
                              azimuth_slot=(view, size.drone_views))
            for view in range(size.drone_views)
        ]
        names = [f"image-{view + 1:02d}.jpeg" for view in range(size.drone_views)]
        if district.split == "train":
            save(satellite, "satellite", block.id, f"{block.id}.jpg")
            for image, name in zip(drones, names):
                save(image, "drone", block.id, name)
        else:
            save(satellite, "gallery_satellite", block.id, f"{block.id}.jpg")
            for image, name in zip(drones, names):
                save(image, "gallery_drone", block.id, name)
            if block.id in queries:
                save(satellite, "query_satellite", block.id, f"{block.id}.jpg")
                for image, name in zip(drones, names):
                    save(image, "query_drone", block.id, name)
        bar.update(1)
    return counts


def generate_cross_view(output: PathLike, size: str = "tiny", seed: int = 0, progress: bool = True) -> Path:
    """Render the cross-view set of ``size`` and ``seed`` at ``output`` (University-1652 layout).

    Rendered into ``<output>.tmp-<pid>`` and renamed into place when complete, so an
    interrupted run never leaves a partial set at ``output``.

    Raises:
        DataError: unknown size, bad seed, or ``output`` exists, is not empty and is not this set.
    """
    from tqdm import tqdm

    spec = get_cross_view_size(size)
    seed = _check_seed(seed)
    output = Path(output).expanduser()
    if _is_complete(output, spec.name, seed):
        return output
    if output.exists() and not writer.is_empty_dir(output):
        raise DataError(
            f"{output}: exists and is not an empty directory nor the synthetic cross-view set "
            f"'{spec.name}' seed {seed} v{CROSS_VIEW_VERSION}; choose another output or delete it"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = writer.temporary_sibling(output)
    writer.remove_tree(tmp)
    try:
        tmp.mkdir()
        districts = [plan_district(spec, split, seed) for split in SPLITS]
        counts = {}
        total = sum(len(d.blocks) for d in districts)
        with tqdm(total=total, desc=f"synthetic cross-view '{spec.name}' (seed {seed})", unit="block",
                  disable=not progress) as bar:
            for district in districts:
                counts[district.split] = _write_split(tmp, spec, seed, district, bar)
        manifest = {
            "format": MANIFEST_FORMAT, "complete": True, "version": CROSS_VIEW_VERSION, "size": spec.name,
            "seed": seed, "counts": counts,
            "parameters": {**asdict(spec), "drone_heading_spread_deg": DRONE_HEADING_SPREAD_DEG},
            "blocks": {d.split: len(d.blocks) for d in districts},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if not writer.publish(tmp, output) and not _is_complete(output, spec.name, seed):
            raise DataError(f"{output}: another process wrote something else there while the set was generated")
    finally:
        writer.remove_tree(tmp)
    return output


def cached_cross_view_path(size: str, seed: int, cache_dir: Optional[PathLike] = None) -> Path:
    """``<cache>/synthetic_cross_view/<size>-seed<seed>-v<version>``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else writer.default_cache_dir()
    return root / "synthetic_cross_view" / f"{size}-seed{seed}-v{CROSS_VIEW_VERSION}"


def ensure_cross_view(size: str = "tiny", seed: int = 0, cache_dir: Optional[PathLike] = None, progress: bool = True) -> Path:
    """The cached cross-view set of ``size`` and ``seed``, generated on first use."""
    spec = get_cross_view_size(size)
    path = cached_cross_view_path(spec.name, _check_seed(seed), cache_dir)
    if _is_complete(path, spec.name, seed):
        return path
    return generate_cross_view(path, size=spec.name, seed=seed, progress=progress)


def azimuth(slot: Tuple[int, int], rng: np.random.Generator) -> float:
    """Bearing (radians clockwise from north, seen from the block) of the drone taking view
    ``slot = (k, n)``: n views evenly spread over ``DRONE_HEADING_SPREAD_DEG`` around due
    south (the camera then looks roughly north, as the tiles are oriented), jittered."""
    k, n = slot
    spread = math.radians(DRONE_HEADING_SPREAD_DEG)
    return math.pi + spread * ((k + float(rng.uniform(0.0, 1.0))) / n - 0.5)
