"""Generate a whole synthetic city (all splits) and cache it.

Work is organised street side by street side so that only one facade strip (per epoch)
is in memory; every image draws from its own random stream, so this order does not
affect the output.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from sfrs.data.geo import EVAL_POSITIVE_RADIUS_M, TRAIN_POSITIVE_RADIUS_M, positives_within
from sfrs.data.synthetic import facades, layout, render, seeding, writer
from sfrs.data.synthetic.strips import render_strips
from sfrs.data.synthetic.sizes import GENERATOR_VERSION, SPLITS, CitySize, get_size
from sfrs.errors import DataError

PathLike = Union[str, Path]

DB_CAPTURE = (2014, 9)  # the capture campaign of the database: one month, daytime
SEASON_MONTHS = {"summer": (6, 7, 8), "autumn": (10, 11), "winter": (12, 1, 2)}


#: the largest ``occlusion``: a query must keep some view of its place.
MAX_OCCLUSION = 0.9


def check_occlusion(occlusion: float) -> float:
    """``occlusion`` as a float in [0, :data:`MAX_OCCLUSION`], else :class:`DataError`."""
    if isinstance(occlusion, bool) or not isinstance(occlusion, (int, float, np.floating)) \
            or not 0.0 <= float(occlusion) <= MAX_OCCLUSION:
        raise DataError(f"synthetic city occlusion must be a number in [0, {MAX_OCCLUSION}] "
                        f"(fraction of each query's width hidden), got {occlusion!r}")
    return float(occlusion)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"synthetic city seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _db_timestamp(seed: int, split_index: int, place: int) -> str:
    rng = seeding.rng_for(seed, seeding.CAPTURE_TIME, split_index, place)
    year, month = DB_CAPTURE
    return f"{year}{month:02d}{int(rng.integers(1, 29)):02d}T{int(rng.integers(10, 16)):02d}{int(rng.integers(60)):02d}"


def _query_timestamp(rng: np.random.Generator, conditions: render.QueryConditions) -> str:
    months = SEASON_MONTHS[conditions.season]
    month = months[int(rng.integers(len(months)))]
    year = 2017 if month < 3 else 2016
    hour = int(rng.choice([21, 22, 23, 0, 1, 2, 3, 4])) if conditions.night else int(rng.integers(8, 19))
    return f"{year}{month:02d}{int(rng.integers(1, 29)):02d}T{hour:02d}{int(rng.integers(60)):02d}"


def _check_disjoint(layouts: Dict[str, layout.SplitLayout]) -> None:
    """Districts must be farther apart than the evaluation radius (guards future edits of the layout)."""
    positions = {s: np.concatenate([lay.utm(lay.database), lay.utm(lay.queries)]) for s, lay in layouts.items()}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            nearest = positives_within(positions[a], positions[b], EVAL_POSITIVE_RADIUS_M)
            if any(len(n) for n in nearest):
                raise AssertionError(f"synthetic layout bug: splits {a} and {b} are closer than 25 m")


def _render_split(root: Path, size: CitySize, seed: int, split: str, split_layout: layout.SplitLayout, bar,
                  occlusion: float) -> Dict:
    split_index = SPLITS.index(split)
    folders = {kind: root / "images" / split / name for kind, name in enumerate(layout.KINDS)}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    shots = defaultdict(list)
    for shot in split_layout.database + split_layout.queries:
        shots[(shot.street, shot.side, shot.kind)].append(shot)

    names: List[str] = []
    night = 0
    for street in split_layout.streets:
        for side in (0, 1):
            facade_rng = seeding.rng_for(seed, seeding.FACADE, split_index, street.index, side)
            plan = facades.plan_side(facade_rng, street.facade_length_m)
            kinds = [k for k in (layout.DATABASE, layout.QUERIES) if shots[(street.index, side, k)]]
            # Epoch = kind: queries see the street at another time, some buildings changed since.
            strips = render_strips(plan, epochs=kinds)
            for kind, strip in zip(kinds, strips):
                for shot in shots[(street.index, side, kind)]:
                    query = kind == layout.QUERIES
                    purpose = seeding.QUERY_IMAGE if query else seeding.DATABASE_IMAGE
                    rng = seeding.rng_for(seed, purpose, split_index, shot.index)
                    pose = render.sample_pose(
                        rng, street.facade_x(shot.x, side), street.facade_distance(shot.lateral, side), query=query
                    )
                    if query:
                        image, conditions = render.render_query(
                            strip, plan.props, pose, rng, occlusion=occlusion,
                            occluder_rng=seeding.rng_for(seed, seeding.OCCLUDER, split_index, shot.index),
                        )
                        timestamp = _query_timestamp(rng, conditions)
                        pano = writer.pano_id(seed, split, "query", shot.index)
                        note = "night" if conditions.night else "day"
                        night += conditions.night
                    else:
                        image = render.render_database(strip, plan.props, pose, rng)
                        timestamp = _db_timestamp(seed, split_index, shot.place)
                        pano = writer.pano_id(seed, split, "place", shot.place)
                        note = ""
                    east, north = street.utm(shot.x, shot.lateral)
                    name = writer.image_name(
                        east, north, layout.UTM_ZONE_NUMBER, layout.UTM_ZONE_LETTER,
                        street.heading_deg(side) + pose.yaw, pano, timestamp, note,
                    )
                    writer.save_jpeg(image, folders[kind] / name, render.JPEG_QUALITY)
                    names.append(f"{kind}/{name}")
                    bar.update(1)
            del strips
    if len(set(names)) != len(names):
        raise AssertionError(f"synthetic city bug: duplicate file names in split {split}")

    db_utm = split_layout.utm(split_layout.database)
    q_utm = split_layout.utm(split_layout.queries)
    without_25 = sum(len(p) == 0 for p in positives_within(q_utm, db_utm, EVAL_POSITIVE_RADIUS_M))
    with_10 = sum(len(p) > 0 for p in positives_within(q_utm, db_utm, TRAIN_POSITIVE_RADIUS_M))
    return {
        "database": len(split_layout.database),
        "queries": len(split_layout.queries),
        "streets": len(split_layout.streets),
        "street_lengths_m": [round(s.length_m, 1) for s in split_layout.streets],
        "queries_without_25m_positive": int(without_25),
        "queries_with_10m_positive": int(with_10),
        "night_queries": int(night),
    }


def _render_city(root: Path, size: CitySize, seed: int, progress: bool, occlusion: float) -> None:
    from tqdm import tqdm

    layouts = {split: layout.split_layout(size, split, seed) for split in SPLITS}
    _check_disjoint(layouts)
    total = sum(len(lay.database) + len(lay.queries) for lay in layouts.values())
    splits = {}
    with tqdm(total=total, desc=f"synthetic city '{size.name}' (seed {seed})", unit="img", disable=not progress) as bar:
        for split in SPLITS:
            splits[split] = _render_split(root, size, seed, split, layouts[split], bar, occlusion)
    writer.write_manifest(
        root,
        {
            "generator_version": GENERATOR_VERSION,
            "size": size.name,
            "seed": seed,
            "image_size": [render.IMAGE_HEIGHT, render.IMAGE_WIDTH],
            "counts": {s: {"database": v["database"], "queries": v["queries"]} for s, v in splits.items()},
            "splits": splits,
            "parameters": {
                "size": _asdict(size),
                "utm_zone": f"{layout.UTM_ZONE_NUMBER}{layout.UTM_ZONE_LETTER}",
                "street_half_width_m": layout.STREET_HALF_WIDTH_M,
                "min_street_spacing_m": layout.MIN_STREET_SPACING_M,
                "uncovered_gap_m": layout.GAP_M,
                "hfov_deg": render.HFOV_DEG,
                "camera_height_m": render.CAMERA_HEIGHT_M,
                "pitch_deg": render.PITCH_DEG,
                "night_probability": render.NIGHT_PROBABILITY,
                "facade_styles": [s.name for s in facades.STYLES],
                "jpeg_quality": render.JPEG_QUALITY,
                "occlusion": occlusion,
            },
        },
    )


def _asdict(size: CitySize) -> Dict:
    from dataclasses import asdict

    return asdict(size)


def generate_city(output: PathLike, size: str = "small", seed: int = 0, progress: bool = True,
                  occlusion: float = 0.0) -> Path:
    """Render the synthetic city of ``size`` and ``seed`` as a VG folder at ``output``.

    ``occlusion`` (0 to :data:`MAX_OCCLUSION`): every query of every split has a vehicle
    next to the camera hiding this fraction of its width (:func:`render.draw_occluder`);
    everything else is the same city, image for image (0: no occluder, the default).

    Layout: ``<output>/images/{train,val,test}/{database,queries}/@...@.jpg`` (120 x 160
    RGB JPEGs) and ``<output>/city.json`` (counts, parameters, generator version). Same
    (size, seed, generator version) gives byte-identical files.

    The city is rendered into ``<output>.tmp-<pid>`` and renamed into place at the end, so
    an interrupted run never leaves a partial city at ``output``.

    Returns:
        ``output`` as a Path.
    Raises:
        DataError: unknown size, bad seed or occlusion, or ``output`` exists, is not empty
            and is not this very city.
    """
    spec = get_size(size)
    seed = _check_seed(seed)
    occlusion = check_occlusion(occlusion)
    output = Path(output).expanduser()
    if writer.is_complete_city(output, spec.name, seed, GENERATOR_VERSION, occlusion):
        return output
    if output.exists() and not writer.is_empty_dir(output):
        raise DataError(
            f"{output}: exists and is not an empty directory nor the synthetic city "
            f"'{spec.name}' seed {seed} occlusion {occlusion:g} v{GENERATOR_VERSION}; choose another output or delete it"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = writer.temporary_sibling(output)
    writer.remove_tree(tmp)  # left over by a killed process that had our pid
    try:
        tmp.mkdir()
        _render_city(tmp, spec, seed, progress, occlusion)
        if not writer.publish(tmp, output) and not writer.is_complete_city(
                output, spec.name, seed, GENERATOR_VERSION, occlusion):
            raise DataError(f"{output}: another process wrote something else there while the city was generated")
    finally:
        writer.remove_tree(tmp)
    return output


def default_cache_dir() -> Path:
    """Cache root: ``$SFRS_CACHE``, else ``$XDG_CACHE_HOME/sfrs``, else ``~/.cache/sfrs`` (read at call time)."""
    return writer.default_cache_dir()


def cached_city_path(size: str, seed: int, cache_dir: Optional[PathLike] = None, occlusion: float = 0.0) -> Path:
    """``<cache>/synthetic/<size>-seed<seed>[-occlusion<f>]-v<GENERATOR_VERSION>`` (whether
    it exists or not; the occlusion part only when it is not 0)."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    knob = f"-occlusion{occlusion:g}" if occlusion else ""
    return root / "synthetic" / f"{size}-seed{seed}{knob}-v{GENERATOR_VERSION}"


def ensure_synthetic(size: str = "small", seed: int = 0, cache_dir: Optional[PathLike] = None, progress: bool = True,
                     occlusion: float = 0.0) -> Path:
    """The cached synthetic city of ``size``, ``seed`` and ``occlusion`` (see
    :func:`generate_city`), generated on first use.

    Safe when several processes ask at once: each renders to its own temporary directory
    and the first rename wins; the others discard their copy and use the winner's.

    Returns:
        ``<cache>/synthetic/<size>-seed<seed>-v<GENERATOR_VERSION>`` where ``<cache>`` is
        ``cache_dir`` or :func:`default_cache_dir`.
    Raises:
        DataError: unknown size, bad seed or occlusion, or an unexpected non-empty directory
            at that path.
    """
    spec = get_size(size)
    seed = _check_seed(seed)
    occlusion = check_occlusion(occlusion)
    path = cached_city_path(spec.name, seed, cache_dir, occlusion)
    if writer.is_complete_city(path, spec.name, seed, GENERATOR_VERSION, occlusion):
        return path
    return generate_city(path, size=spec.name, seed=seed, progress=progress, occlusion=occlusion)
