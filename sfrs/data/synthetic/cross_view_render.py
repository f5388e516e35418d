"""Drawing the cross-view world of :mod:`.cross_view`: satellite tiles cut from one
north-up orthographic map of the district, and drone views rendered in perspective.

A drone view is drawn back to front (painter's algorithm): the ground map of the drone's
time (roads, lots, parked cars, shadows) warped by the ground plane's homography, then
buildings and trees sorted by distance. Walls are planes, so each visible wall is the
street city's facade drawing (:func:`.strips.render_strips`) warped by its own
homography; roofs, rooftop units and trees are flat-shaded polygons and discs. As in the
street city, views are drawn at twice the stored size and box-filtered down.

World frame: x east, y north, z up, metres. Satellite map pixels: column = (x - x0) *
ppm, row = (y1 - y) * ppm (north up).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from sfrs.data.synthetic import facades, strips
from sfrs.data.synthetic.cross_view import azimuth
from sfrs.data.synthetic.cross_view_plan import (
    ASPHALT, GRASS, PAVEMENT, ROAD, SIDEWALK, SIDEWALK_M, Block, Building, District, Tree,
)
from sfrs.data.synthetic.facades import RGB

JPEG_QUALITY = 88
SATELLITE_PPM = 3.0
GROUND_PPM = 2.5
TEXTURE_PPM = 8.0
SUPERSAMPLE = 2
HFOV_DEG = 50.0
NEAR_M = 0.5
#: satellite tiles span this many times the block's longer side (some neighbours in view).
TILE_SPAN = 2.0
#: drone camera: degrees below the horizon, and distance to the block centre in block sizes (+ 20 m).
DRONE_PITCH_DEG = (40.0, 60.0)
DRONE_DISTANCE = (1.3, 1.8)
#: sun of each epoch: (azimuth clockwise from north, elevation), degrees.
SUN = {0: (150.0, 52.0), 1: (235.0, 38.0)}
FAR_GROUND: RGB = (104, 112, 92)


def _sun_vectors(epoch: int) -> Tuple[np.ndarray, float]:
    """Horizontal unit vector towards the sun, and shadow length per metre of height."""
    az, elevation = (math.radians(v) for v in SUN[epoch])
    return np.array([math.sin(az), math.cos(az)]), 1.0 / math.tan(elevation)


def _convex_hull(points: np.ndarray) -> List[Tuple[float, float]]:
    """Counter-clockwise hull of (N, 2) points (monotone chain)."""
    pts = sorted(set(map(tuple, np.round(points, 6))))
    if len(pts) <= 2:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: List[Tuple[float, float]] = []
    upper: List[Tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def _shade(colour: RGB, factor: float) -> RGB:
    return strips.shade(colour, factor)


class _Map:
    """Metre-based drawing on a north-up map image of the district's extent."""

    def __init__(self, district: District, ppm: float, base: RGB, rng: np.random.Generator) -> None:
        self.x0, self.y0, self.x1, self.y1 = district.extent
        self.ppm = ppm
        width = int(math.ceil((self.x1 - self.x0) * ppm))
        height = int(math.ceil((self.y1 - self.y0) * ppm))
        # soft terrain variation: coarse noise upsampled
        coarse = rng.normal(0.0, 10.0, (max(2, height // 24), max(2, width // 24), 3))
        noise = np.asarray(Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR), dtype=np.int16) - 128
        self.image = Image.fromarray(np.clip(np.asarray(base, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        self.draw = ImageDraw.Draw(self.image)

    def px(self, x: float, y: float) -> Tuple[float, float]:
        return ((x - self.x0) * self.ppm, (self.y1 - y) * self.ppm)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB, outline: Optional[RGB] = None) -> None:
        a, b = self.px(x0, y1), self.px(x1, y0)
        self.draw.rectangle((a[0], a[1], max(a[0], b[0] - 1), max(a[1], b[1] - 1)), fill=fill, outline=outline)

    def polygon(self, points: Sequence[Tuple[float, float]], fill: RGB, outline: Optional[RGB] = None) -> None:
        self.draw.polygon([self.px(x, y) for x, y in points], fill=fill, outline=outline)

    def disc(self, x: float, y: float, r: float, fill: RGB, outline: Optional[RGB] = None) -> None:
        a, b = self.px(x - r, y + r), self.px(x + r, y - r)
        self.draw.ellipse((a[0], a[1], b[0], b[1]), fill=fill, outline=outline)


def _draw_ground(m: _Map, district: District, epoch: int) -> None:
    """Roads, sidewalks, lots, parked cars of ``epoch``, cast shadows of ``epoch``'s sun."""
    for block in district.blocks:
        m.rect(block.x0 - SIDEWALK_M, block.y0 - SIDEWALK_M, block.x1 + SIDEWALK_M, block.y1 + SIDEWALK_M, SIDEWALK)
    for x0, y0, x1, y1 in district.roads:
        m.rect(x0, y0, x1, y1, ROAD)
    for x0, y0, x1, y1 in district.roads:  # dashed centre lines
        if x1 - x0 > y1 - y0:
            for x in np.arange(x0, x1, 9.0):
                m.rect(float(x), (y0 + y1) / 2 - 0.12, float(x) + 3.0, (y0 + y1) / 2 + 0.12, (220, 220, 210))
        else:
            for y in np.arange(y0, y1, 9.0):
                m.rect((x0 + x1) / 2 - 0.12, float(y), (x0 + x1) / 2 + 0.12, float(y) + 3.0, (220, 220, 210))
    for block in district.blocks:
        for lot in block.lots:
            colour = {"grass": GRASS, "pavement": PAVEMENT, "parking": ASPHALT}[lot.ground]
            m.rect(lot.x0, lot.y0, lot.x1, lot.y1, colour)
            if lot.ground == "parking":
                for x in np.arange(lot.x0 + 0.6, lot.x1 - 0.6, 2.8):
                    for y0, y1 in ((lot.y0 + 1.0, lot.y0 + 6.0), (lot.y1 - 6.0, lot.y1 - 1.0)):
                        m.rect(float(x), y0, float(x) + 0.15, y1, (215, 215, 205))
    for car in district.cars[epoch]:
        half_l, half_w = 2.2, 0.95
        dx, dy = (half_l, half_w) if car.along_x else (half_w, half_l)
        m.rect(car.x - dx, car.y - dy, car.x + dx, car.y + dy, car.colour)
        m.rect(car.x - dx * 0.35, car.y - dy * 0.35, car.x + dx * 0.35, car.y + dy * 0.35, _shade(car.colour, 0.6))
    _draw_shadows(m, district, epoch)


def _draw_shadows(m: _Map, district: District, epoch: int) -> None:
    towards_sun, length = _sun_vectors(epoch)
    mask = Image.new("L", m.image.size, 0)
    draw = ImageDraw.Draw(mask)
    for block in district.blocks:
        for b in block.buildings:
            corners = np.array([(b.x0, b.y0), (b.x1, b.y0), (b.x1, b.y1), (b.x0, b.y1)])
            top = b.height + (min(b.x1 - b.x0, b.y1 - b.y0) * 0.3 if b.gable else 0.0)
            cast = corners - towards_sun * length * top
            draw.polygon([m.px(x, y) for x, y in _convex_hull(np.concatenate([corners, cast]))], fill=255)
        for t in block.trees:
            cx, cy = np.array([t.x, t.y]) - towards_sun * length * t.height * 0.8
            a, c = m.px(cx - t.radius, cy + t.radius), m.px(cx + t.radius, cy - t.radius)
            draw.ellipse((a[0], a[1], c[0], c[1]), fill=255)
    dark = Image.eval(m.image, lambda v: int(v * 0.55))
    m.image.paste(dark, mask=mask)


def _draw_roofs(m: _Map, district: District, epoch: int) -> None:
    """Trees and roofs seen from straight above, lit by ``epoch``'s sun."""
    towards_sun, _ = _sun_vectors(epoch)
    for block in district.blocks:
        for t in block.trees:
            colour = (min(255, t.colour[0] + 40), t.colour[1], max(0, t.colour[2] - 10))  # the satellite's season
            m.disc(t.x, t.y, t.radius, _shade(colour, 0.85), outline=_shade(colour, 0.6))
            m.disc(t.x + 0.3 * t.radius * towards_sun[0], t.y + 0.3 * t.radius * towards_sun[1], 0.5 * t.radius, colour)
        for b in block.buildings:
            if b.gable:
                along_x = (b.x1 - b.x0) >= (b.y1 - b.y0)
                if along_x:
                    ym = (b.y0 + b.y1) / 2
                    halves = (((b.x0, b.y0), (b.x1, ym)), ((b.x0, ym), (b.x1, b.y1)))
                    normals = (np.array([0.0, -1.0]), np.array([0.0, 1.0]))
                else:
                    xm = (b.x0 + b.x1) / 2
                    halves = (((b.x0, b.y0), (xm, b.y1)), ((xm, b.y0), (b.x1, b.y1)))
                    normals = (np.array([-1.0, 0.0]), np.array([1.0, 0.0]))
                for (a, c), normal in zip(halves, normals):
                    light = 0.8 + 0.25 * float(normal @ towards_sun)
                    m.rect(a[0], a[1], c[0], c[1], _shade(b.roof, light))
            else:
                m.rect(b.x0, b.y0, b.x1, b.y1, b.roof, outline=_shade(b.roof, 0.7))
                for ux0, uy0, ux1, uy1, _ in b.rooftop:
                    m.rect(ux0, uy0, ux1, uy1, _shade(b.roof, 1.25), outline=_shade(b.roof, 0.8))


class Scene:
    """What every view of a district shares: the satellite map (epoch 0), the drone's
    ground map (epoch 1) and the buildings' facade textures (drawn on first use)."""

    def __init__(self, district: District, seed_rng: Optional[np.random.Generator] = None) -> None:
        self.district = district
        rng = seed_rng if seed_rng is not None else np.random.default_rng(0)
        satellite = _Map(district, SATELLITE_PPM, GRASS, rng)
        _draw_ground(satellite, district, epoch=0)
        _draw_roofs(satellite, district, epoch=0)
        self.satellite = satellite
        ground = _Map(district, GROUND_PPM, GRASS, rng)
        _draw_ground(ground, district, epoch=1)
        self.ground = ground
        self._textures: Dict[int, Image.Image] = {}

    def texture(self, building: Building) -> Image.Image:
        """The building's facade, ``TEXTURE_PPM`` pixels per metre, ground to wall top."""
        key = id(building)
        if key not in self._textures:
            facade = building.facade
            plan = facades.SidePlan(length_m=facade.x1, buildings=(facade,), props=())
            strip = strips.render_strips(plan, epochs=(0,))[0].rgb
            top = int(round((facades.TOP_M - building.height) * facades.PPM))
            bottom = int(round(facades.TOP_M * facades.PPM))
            wall = strip.crop((0, top, strip.width, bottom))
            size = (max(1, int(round(facade.x1 * TEXTURE_PPM))), max(1, int(round(building.height * TEXTURE_PPM))))
            self._textures[key] = wall.resize(size, Image.Resampling.BOX)
        return self._textures[key]


# -- satellite ---------------------------------------------------------------------------------


def _sensor(image: Image.Image, rng: np.random.Generator, *, gains, gamma, haze, noise, blur) -> Image.Image:
    """Colour balance, gamma, haze, blur and noise of a camera (uint8 in and out)."""
    if blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = np.clip(arr * np.asarray(gains, dtype=np.float32), 0, 1) ** gamma
    arr = (1 - haze[0]) * arr + haze[0] * np.asarray(haze[1], dtype=np.float32)
    arr = arr * 255.0 + rng.normal(0.0, noise, arr.shape)
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


def satellite_tile(scene: Scene, block: Block, px: int, rng: np.random.Generator) -> Image.Image:
    """A north-up ``px`` x ``px`` tile centred (within 2 m) on ``block``."""
    m = scene.satellite
    span = TILE_SPAN * block.size * float(rng.uniform(0.95, 1.05))
    cx, cy = (c + float(rng.uniform(-2.0, 2.0)) for c in block.centre)
    left, top = m.px(cx - span / 2, cy + span / 2)
    right, bottom = m.px(cx + span / 2, cy - span / 2)
    tile = m.image.resize((px, px), Image.Resampling.BOX, box=(left, top, right, bottom))
    return _sensor(
        tile, rng, gains=np.array([0.92, 0.97, 1.06]) * float(rng.uniform(0.9, 1.05)), gamma=float(rng.uniform(1.0, 1.2)),
        haze=(float(rng.uniform(0.08, 0.18)), (0.75, 0.78, 0.82)), noise=float(rng.uniform(1.0, 3.0)),
        blur=float(rng.uniform(0.3, 0.8)),
    )


# -- drone -------------------------------------------------------------------------------------


class Camera:
    """Pinhole camera at ``centre`` looking at ``target`` (square image of ``size`` pixels)."""

    def __init__(self, centre: np.ndarray, target: np.ndarray, roll_deg: float, size: int) -> None:
        forward = target - centre
        forward = forward / np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right = right / np.linalg.norm(right)
        down = np.cross(forward, right)
        roll = math.radians(roll_deg)
        right, down = math.cos(roll) * right + math.sin(roll) * down, -math.sin(roll) * right + math.cos(roll) * down
        self.R = np.stack([right, down, forward])
        self.centre = centre
        self.size = size
        self.focal = (size / 2) / math.tan(math.radians(HFOV_DEG) / 2)
        self.K = np.array([[self.focal, 0, size / 2], [0, self.focal, size / 2], [0, 0, 1.0]])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.centre) @ self.R.T

    def polygon(self, points: np.ndarray) -> Optional[List[Tuple[float, float]]]:
        """Pixel polygon of a planar world polygon (N, 3), clipped to the front of the camera."""
        cam = self.to_camera(points)
        clipped = []
        for i in range(len(cam)):  # Sutherland-Hodgman against z = NEAR_M
            a, b = cam[i], cam[(i + 1) % len(cam)]
            if a[2] >= NEAR_M:
                clipped.append(a)
            if (a[2] >= NEAR_M) != (b[2] >= NEAR_M):
                t = (NEAR_M - a[2]) / (b[2] - a[2])
                clipped.append(a + t * (b - a))
        if len(clipped) < 3:
            return None
        uv = (np.array(clipped) @ self.K.T)
        return [(float(u / w), float(v / w)) for u, v, w in uv]

    def plane_coefficients(self, origin: np.ndarray, ex: np.ndarray, ey: np.ndarray, offset=(0.0, 0.0)) -> Tuple[float, ...]:
        """PIL PERSPECTIVE coefficients: output pixel (+ ``offset``) -> (a, b) with world
        point ``origin + a ex + b ey`` (a plane's image pixels, e.g. a texture's)."""
        image_from_plane = self.K @ self.R @ np.column_stack([ex, ey, origin - self.centre])
        shift = np.array([[1.0, 0, offset[0]], [0, 1.0, offset[1]], [0, 0, 1.0]])
        plane_from_output = np.linalg.inv(image_from_plane) @ shift
        plane_from_output /= plane_from_output[2, 2]
        return tuple(float(v) for v in plane_from_output.ravel()[:8])


def _paste_plane(canvas: Image.Image, camera: Camera, texture: Image.Image, origin, ex, ey, outline: List[Tuple[float, float]]) -> None:
    """Warp ``texture`` (a plane's pixels) into ``canvas`` inside the pixel polygon ``outline``."""
    us, vs = [p[0] for p in outline], [p[1] for p in outline]
    left, top = max(0, int(math.floor(min(us)))), max(0, int(math.floor(min(vs))))
    right, bottom = min(canvas.width, int(math.ceil(max(us))) + 1), min(canvas.height, int(math.ceil(max(vs))) + 1)
    if right <= left or bottom <= top:
        return
    coefficients = camera.plane_coefficients(origin, ex, ey, offset=(left, top))
    patch = texture.transform((right - left, bottom - top), Image.Transform.PERSPECTIVE, coefficients,
                              resample=Image.Resampling.NEAREST)
    mask = Image.new("L", patch.size, 0)
    ImageDraw.Draw(mask).polygon([(u - left, v - top) for u, v in outline], fill=255)
    canvas.paste(patch, (left, top), mask)


def _light(normal: np.ndarray, epoch: int = 1) -> float:
    """Lambert-like brightness of a face with unit ``normal`` under ``epoch``'s sun."""
    az, elevation = (math.radians(v) for v in SUN[epoch])
    sun = np.array([math.sin(az) * math.cos(elevation), math.cos(az) * math.cos(elevation), math.sin(elevation)])
    return 0.55 + 0.5 * max(0.0, float(normal @ sun))


def _draw_building(canvas: Image.Image, draw: ImageDraw.ImageDraw, camera: Camera, scene: Scene, b: Building) -> None:
    up = np.array([0.0, 0.0, 1.0])
    corners = [np.array(c) for c in ((b.x0, b.y0, 0.0), (b.x1, b.y0, 0.0), (b.x1, b.y1, 0.0), (b.x0, b.y1, 0.0))]
    texture = scene.texture(b)
    walls = []
    for i in range(4):  # counter-clockwise seen from above: each edge runs left to right seen from outside
        p0, p1 = corners[i], corners[(i + 1) % 4]
        along = (p1 - p0) / np.linalg.norm(p1 - p0)
        normal = np.cross(along, up)
        middle = (p0 + p1) / 2 + up * b.height / 2
        if normal @ (camera.centre - middle) > 0:
            walls.append((float(np.linalg.norm(camera.centre - middle)), p0, p1, along, normal))
    for _, p0, p1, along, normal in sorted(walls, key=lambda w: -w[0]):
        outline = camera.polygon(np.array([p0, p1, p1 + up * b.height, p0 + up * b.height]))
        if outline is None:
            continue
        width = max(1, min(texture.width, int(round(np.linalg.norm(p1 - p0) * TEXTURE_PPM))))
        light = _light(normal)
        wall = texture.crop((0, 0, width, texture.height)).point(lambda v, k=light: min(255, int(v * k)))
        _paste_plane(canvas, camera, wall, p0 + up * b.height, along / TEXTURE_PPM, -up / TEXTURE_PPM, outline)
    top = [c + up * b.height for c in corners]
    if b.gable:
        _draw_gable(draw, camera, b, top)
        return
    outline = camera.polygon(np.array(top))
    if outline is not None:
        draw.polygon(outline, fill=_shade(b.roof, _light(up)), outline=_shade(b.roof, 0.7))
    for ux0, uy0, ux1, uy1, h in b.rooftop:
        base = b.height
        box = [np.array(c) for c in ((ux0, uy0, base), (ux1, uy0, base), (ux1, uy1, base), (ux0, uy1, base))]
        colour = _shade(b.roof, 1.25)
        for i in range(4):
            p0, p1 = box[i], box[(i + 1) % 4]
            normal = np.cross((p1 - p0) / np.linalg.norm(p1 - p0), up)
            if normal @ (camera.centre - (p0 + p1) / 2) > 0:
                face = camera.polygon(np.array([p0, p1, p1 + up * h, p0 + up * h]))
                if face is not None:
                    draw.polygon(face, fill=_shade(colour, _light(normal) * 0.9))
        face = camera.polygon(np.array([c + up * h for c in box]))
        if face is not None:
            draw.polygon(face, fill=_shade(colour, _light(up)))


def _draw_gable(draw: ImageDraw.ImageDraw, camera: Camera, b: Building, top: List[np.ndarray]) -> None:
    """A gable roof whose ridge runs along the footprint's longer side."""
    along_x = (b.x1 - b.x0) >= (b.y1 - b.y0)
    peak = min(b.x1 - b.x0, b.y1 - b.y0) * 0.3
    h = b.height
    if along_x:
        ym = (b.y0 + b.y1) / 2
        r0, r1 = np.array([b.x0, ym, h + peak]), np.array([b.x1, ym, h + peak])
        slopes = ([top[0], top[1], r1, r0], [top[3], r0, r1, top[2]])
        ends = ([top[0], r0, top[3]], [top[1], top[2], r1])
    else:
        xm = (b.x0 + b.x1) / 2
        r0, r1 = np.array([xm, b.y0, h + peak]), np.array([xm, b.y1, h + peak])
        slopes = ([top[0], r0, r1, top[3]], [top[1], top[2], r1, r0])
        ends = ([top[0], top[1], r0], [top[3], r1, top[2]])
    faces = []
    for points, colour in [(s, b.roof) for s in slopes] + [(e, b.facade.wall) for e in ends]:
        points = np.array(points)
        normal = np.cross(points[1] - points[0], points[2] - points[0])
        normal = normal / np.linalg.norm(normal)
        centre = points.mean(axis=0)
        if normal @ (camera.centre - centre) <= 0:
            normal = -normal  # faces are two-sided; shade the side the camera sees
        faces.append((float(np.linalg.norm(camera.centre - centre)), points, _shade(colour, _light(normal))))
    for _, points, colour in sorted(faces, key=lambda f: -f[0]):
        outline = camera.polygon(points)
        if outline is not None:
            draw.polygon(outline, fill=colour)


def _draw_tree(draw: ImageDraw.ImageDraw, camera: Camera, t: Tree) -> None:
    base, crown = np.array([t.x, t.y, 0.0]), np.array([t.x, t.y, t.height])
    cam = camera.to_camera(np.array([base, crown]))
    if np.any(cam[:, 2] < NEAR_M):
        return
    uv = (cam @ camera.K.T)
    (u0, v0), (u1, v1) = uv[0, :2] / uv[0, 2], uv[1, :2] / uv[1, 2]
    radius = camera.focal * t.radius / cam[1, 2]
    draw.line([(u0, v0), (u1, v1)], fill=(86, 66, 48), width=max(1, int(round(camera.focal * 0.35 / cam[1, 2]))))
    draw.ellipse((u1 - radius, v1 - radius, u1 + radius, v1 + radius), fill=_shade(t.colour, 0.8))
    r2 = radius * 0.55
    du, dv = -0.3 * radius, -0.3 * radius
    draw.ellipse((u1 + du - r2, v1 + dv - r2, u1 + du + r2, v1 + dv + r2), fill=_shade(t.colour, 1.1))


def drone_view(scene: Scene, block: Block, px: int, rng: np.random.Generator, azimuth_slot: Tuple[int, int]) -> Image.Image:
    """An oblique ``px`` x ``px`` view of ``block`` from a drone circling it.

    The camera looks at the block's centre (within 3 m) from azimuth ``azimuth_slot``
    (view k of n, evenly spread and jittered), 40-60 degrees below the horizon, from
    1.3-1.8 block sizes away, with a little roll.
    """
    heading = azimuth(azimuth_slot, rng)
    pitch = math.radians(float(rng.uniform(*DRONE_PITCH_DEG)))
    distance = float(rng.uniform(*DRONE_DISTANCE)) * block.size + 20.0
    target = np.array([*(c + float(rng.uniform(-3.0, 3.0)) for c in block.centre), 0.0])
    offset = np.array([math.sin(heading) * math.cos(pitch), math.cos(heading) * math.cos(pitch), math.sin(pitch)])
    camera = Camera(target + distance * offset, target, float(rng.uniform(-4.0, 4.0)), px * SUPERSAMPLE)

    ground = scene.ground
    canvas = ground.image.transform(
        (camera.size, camera.size), Image.Transform.PERSPECTIVE,
        camera.plane_coefficients(np.array([ground.x0, ground.y1, 0.0]), np.array([1 / ground.ppm, 0.0, 0.0]),
                                  np.array([0.0, -1 / ground.ppm, 0.0])),
        resample=Image.Resampling.NEAREST, fillcolor=FAR_GROUND,
    )
    draw = ImageDraw.Draw(canvas)
    reach = distance + 2.0 * block.size
    objects = []
    for other in scene.district.blocks:
        if math.dist(other.centre, target[:2]) > reach + other.size:
            continue
        for b in other.buildings:
            centre = np.array([*b.centre, b.height / 2])
            objects.append((float(np.linalg.norm(camera.centre - centre)), "building", b))
        for t in other.trees:
            objects.append((float(np.linalg.norm(camera.centre - np.array([t.x, t.y, t.height]))), "tree", t))
    for _, kind, thing in sorted(objects, key=lambda o: -o[0]):
        if kind == "building":
            _draw_building(canvas, draw, camera, scene, thing)
        else:
            _draw_tree(draw, camera, thing)
    image = canvas.reduce(SUPERSAMPLE)
    warm = float(rng.uniform(-0.06, 0.1))
    return _sensor(
        image, rng, gains=np.array([1 + warm, 1.0, 1 - warm]) * float(rng.uniform(0.85, 1.15)),
        gamma=float(rng.uniform(0.85, 1.1)), haze=(float(rng.uniform(0.02, 0.12)), (0.8, 0.84, 0.9)),
        noise=float(rng.uniform(1.5, 4.0)), blur=float(rng.uniform(0.0, 0.5)),
    )
