"""From a facade strip to a photograph: camera view, street furniture, occluders, appearance.

The facade is a plane, so a pinhole camera sees it through a homography: one PIL
perspective warp per image. Street furniture and occluders stand closer to the camera
and are projected in 3-D, so they move faster than the facade between nearby views
(parallax). Database images are taken at one "time" (clear day, summer, same camera
height); queries at another: different light, sky, season, night, cars and people in
front, blur, noise and compression.

Views are rendered at ``SUPERSAMPLE`` times the stored size and box-filtered down, which
anti-aliases window grids at a negligible cost.

World frame of a street side: facade plane ``Z = 0``, ``X`` along the strip, ``Y`` up,
the camera at ``Z = -distance`` looking towards +Z.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from sfrs.data.synthetic import facades, strips
from sfrs.data.synthetic.facades import RGB, Prop, Strip

IMAGE_HEIGHT = 120
IMAGE_WIDTH = 160
SUPERSAMPLE = 2
HFOV_DEG = 90.0  # at 10 m from the facade a view spans 20 m: a positive 10 m away shares half of it
CAMERA_HEIGHT_M = 2.5  # roof of a capture car
PITCH_DEG = 14.0  # tilted up so that the upper floors and the roof line are in view
JPEG_QUALITY = 90

NIGHT_PROBABILITY = 0.2
SEASONS = ("summer", "autumn", "winter")
QUERY_SEASON_P = (0.4, 0.35, 0.25)

CAR_COLOURS: Tuple[RGB, ...] = (
    (200, 200, 205), (30, 30, 34), (150, 20, 24), (30, 60, 130), (230, 230, 226), (90, 94, 100), (200, 170, 40),
)
CLOTHES: Tuple[RGB, ...] = ((30, 30, 40), (140, 30, 30), (40, 80, 140), (200, 190, 170), (60, 100, 60), (90, 60, 40))


@dataclass(frozen=True)
class Pose:
    """Camera pose relative to a street side's facade.

    Attributes:
        x: position along the facade strip (metres).
        distance: from the camera to the facade plane (metres).
        height: camera height above the sidewalk (metres).
        yaw / pitch / roll: degrees; yaw > 0 turns right, pitch > 0 looks up.
        zoom: focal length relative to a 90 degree horizontal field of view.
    """

    x: float
    distance: float
    height: float
    yaw: float
    pitch: float
    roll: float
    zoom: float


def sample_pose(rng: np.random.Generator, x: float, distance: float, query: bool) -> Pose:
    """A jittered camera at facade position ``x``; queries jitter much more than the database."""
    if query:
        return Pose(
            x=x,
            distance=distance,
            height=float(np.clip(rng.normal(CAMERA_HEIGHT_M - 0.3, 0.4), 1.4, 3.2)),
            yaw=float(np.clip(rng.normal(0.0, 6.0), -15.0, 15.0)),
            pitch=float(np.clip(rng.normal(PITCH_DEG, 4.0), PITCH_DEG - 9.0, PITCH_DEG + 9.0)),
            roll=float(np.clip(rng.normal(0.0, 2.5), -6.0, 6.0)),
            zoom=float(np.clip(rng.normal(1.0, 0.1), 0.8, 1.25)),
        )
    return Pose(
        x=x,
        distance=distance,
        height=CAMERA_HEIGHT_M + float(rng.normal(0.0, 0.03)),
        yaw=float(np.clip(rng.normal(0.0, 1.5), -4.0, 4.0)),
        pitch=float(np.clip(rng.normal(PITCH_DEG, 1.0), PITCH_DEG - 3.0, PITCH_DEG + 3.0)),
        roll=float(np.clip(rng.normal(0.0, 0.5), -1.5, 1.5)),
        zoom=float(np.clip(rng.normal(1.0, 0.02), 0.95, 1.05)),
    )


class Camera:
    """Pinhole camera of a :class:`Pose` at the supersampled resolution."""

    def __init__(self, pose: Pose):
        self.pose = pose
        self.width = IMAGE_WIDTH * SUPERSAMPLE
        self.height = IMAGE_HEIGHT * SUPERSAMPLE
        self.focal = (self.width / 2) / math.tan(math.radians(HFOV_DEG) / 2) * pose.zoom
        self.K = np.array([[self.focal, 0, self.width / 2], [0, self.focal, self.height / 2], [0, 0, 1.0]])
        yaw, pitch, roll = (math.radians(a) for a in (pose.yaw, pose.pitch, pose.roll))
        r_yaw = np.array([[math.cos(yaw), 0, -math.sin(yaw)], [0, 1, 0], [math.sin(yaw), 0, math.cos(yaw)]])
        r_pitch = np.array([[1, 0, 0], [0, math.cos(pitch), math.sin(pitch)], [0, -math.sin(pitch), math.cos(pitch)]])
        r_roll = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
        # World Y points up, image rows point down.
        self.R = r_roll @ r_pitch @ r_yaw @ np.diag([1.0, -1.0, 1.0])
        self.centre = np.array([pose.x, pose.height, -pose.distance])

    def project(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) and depths (N,) of world points (N, 3)."""
        cam = (np.asarray(points, dtype=np.float64) - self.centre) @ self.R.T
        depth = cam[:, 2]
        uv = (cam @ self.K.T)[:, :2] / np.maximum(depth, 1e-6)[:, None]
        return uv, depth

    def strip_coefficients(self) -> Tuple[float, ...]:
        """PIL PERSPECTIVE coefficients mapping output pixels to facade-strip pixels."""
        metres_from_pixels = np.array([[1 / facades.PPM, 0, 0], [0, -1 / facades.PPM, facades.TOP_M], [0, 0, 1.0]])
        plane_to_camera = np.array([[1.0, 0, -self.pose.x], [0, 1, -self.pose.height], [0, 0, self.pose.distance]])
        image_from_strip = self.K @ self.R @ plane_to_camera @ metres_from_pixels
        strip_from_image = np.linalg.inv(image_from_strip)
        strip_from_image /= strip_from_image[2, 2]
        return tuple(float(v) for v in strip_from_image.ravel()[:8])


class _Scene:
    """A view being drawn: colour (and, for queries, label) images plus the camera that made them."""

    def __init__(self, strip: Strip, camera: Camera, with_label: bool):
        self.camera = camera
        size = (camera.width, camera.height)
        coeffs = camera.strip_coefficients()
        # Nearest sampling of the supersampled view, then a 2x2 box filter, is a 4-sample
        # anti-aliasing 5x cheaper than PIL's bilinear perspective warp.
        warp = dict(size=size, method=Image.Transform.PERSPECTIVE, data=coeffs, resample=Image.Resampling.NEAREST)
        self.rgb = strip.rgb.transform(**warp, fillcolor=facades.SKY_TOP)
        self.draw = ImageDraw.Draw(self.rgb)
        self.label = None
        self.draw_label = None
        if with_label:
            self.label = strip.label.transform(**warp, fillcolor=facades.LABEL_SKY)
            self.draw_label = ImageDraw.Draw(self.label)
        self.lamps: List[Tuple[float, float, float]] = []  # (u, v, radius px) of lamp heads in view

    def _label(self, method: str, *args, **kwargs) -> None:
        if self.draw_label is not None:
            getattr(self.draw_label, method)(*args, fill=facades.LABEL_OTHER, **kwargs)

    def polygon(self, points: Sequence[Tuple[float, float, float]], fill: RGB) -> None:
        uv, depth = self.camera.project(np.array(points))
        if np.any(depth < 0.3):
            return
        pts = [tuple(p) for p in uv.tolist()]
        self.draw.polygon(pts, fill=fill)
        self._label("polygon", pts)

    def trapezoid(self, z: float, y0: float, y1: float, bottom: Tuple[float, float], top: Tuple[float, float], fill: RGB) -> None:
        """A flat vertical trapezoid at depth ``z``: x-range ``bottom`` at height y0, ``top`` at y1."""
        self.polygon([(bottom[0], y0, z), (bottom[1], y0, z), (top[1], y1, z), (top[0], y1, z)], fill)

    def disc(self, centre: Tuple[float, float, float], rx: float, ry: float, fill: RGB) -> Tuple[float, float, float]:
        """A vertical ellipse of radii (rx, ry) metres; returns its (u, v, radius px)."""
        uv, depth = self.camera.project(np.array([centre]))
        if depth[0] < 0.3:
            return (0.0, 0.0, 0.0)
        u, v = uv[0]
        pu, pv = self.camera.focal * rx / depth[0], self.camera.focal * ry / depth[0]
        box = (u - pu, v - pv, u + pu, v + pv)
        self.draw.ellipse(box, fill=fill)
        self._label("ellipse", box)
        return (float(u), float(v), float(max(pu, pv)))

    def line(self, a: Tuple[float, float, float], b: Tuple[float, float, float], width_m: float, fill: RGB) -> None:
        uv, depth = self.camera.project(np.array([a, b]))
        if np.any(depth < 0.3):
            return
        width = max(1, int(round(self.camera.focal * width_m / float(depth.mean()))))
        pts = [tuple(p) for p in uv.tolist()]
        self.draw.line(pts, fill=fill, width=width)
        self._label("line", pts, width=width)


def _draw_props(scene: _Scene, props: Sequence[Prop], season: str) -> None:
    """Lamps, trees and bins of the street side near the camera (far ones first)."""
    x = scene.camera.pose.x
    near = [p for p in props if abs(p.x - x) < 22.0]
    for p in sorted(near, key=lambda p: p.depth_m):
        z = -p.depth_m
        if p.kind == "lamp":
            scene.trapezoid(z, 0.0, p.height_m, (p.x - 0.08, p.x + 0.08), (p.x - 0.06, p.x + 0.06), p.colour)
            scene.line((p.x, p.height_m, z), (p.x, p.height_m + 0.1, z - 1.2), 0.08, p.colour)
            scene.lamps.append(scene.disc((p.x, p.height_m - 0.05, z - 1.2), p.size_m, p.size_m * 0.5, (225, 225, 210)))
        elif p.kind == "tree":
            trunk = (92, 70, 50)
            scene.trapezoid(z, 0.0, p.height_m, (p.x - 0.16, p.x + 0.16), (p.x - 0.1, p.x + 0.1), trunk)
            top = p.height_m + p.size_m * 0.8
            if season == "winter":
                for dx, dy in ((-0.9, 1.2), (0.8, 1.4), (-0.4, 1.9), (0.5, 0.8), (0.0, 2.1)):
                    scene.line((p.x, p.height_m, z), (p.x + dx * p.size_m, p.height_m + dy * p.size_m * 0.8, z), 0.05, trunk)
                continue
            colour = p.colour
            if season == "autumn":
                colour = (min(255, colour[1] + 80), max(0, colour[1] - 10), 30)
            scene.disc((p.x, top, z), p.size_m, p.size_m * 0.9, colour)
            for dx, dy, k in ((-0.35, 0.25, 0.8), (0.3, -0.2, 1.15), (0.25, 0.35, 0.9)):
                centre = (p.x + dx * p.size_m, top + dy * p.size_m, z)
                scene.disc(centre, 0.45 * p.size_m, 0.4 * p.size_m, strips.shade(colour, k))
        else:
            span = (p.x - p.size_m / 2, p.x + p.size_m / 2)
            scene.trapezoid(z, 0.0, p.height_m, span, span, p.colour)


def _draw_car(scene: _Scene, rng: np.random.Generator) -> None:
    pose = scene.camera.pose
    depth_from_camera = float(rng.uniform(3.5, min(7.5, pose.distance - 2.0)))
    z = -pose.distance + depth_from_camera
    xc = pose.x + float(rng.uniform(-9.0, 9.0))
    half = float(rng.uniform(1.9, 2.4))
    colour = CAR_COLOURS[rng.integers(len(CAR_COLOURS))]
    glass = (40, 48, 58)
    scene.trapezoid(z, 0.28, 1.0, (xc - half, xc + half), (xc - half, xc + half), colour)
    scene.trapezoid(z, 1.0, 1.48, (xc - half + 0.9, xc + half - 1.1), (xc - half + 1.3, xc + half - 1.6), colour)
    scene.trapezoid(z, 1.04, 1.42, (xc - half + 1.05, xc + half - 1.25), (xc - half + 1.38, xc + half - 1.65), glass)
    scene.line((xc, 1.0, z), (xc, 1.45, z), 0.06, colour)
    for wx in (xc - half + 0.75, xc + half - 0.75):
        scene.disc((wx, 0.32, z), 0.32, 0.32, (20, 20, 22))
        scene.disc((wx, 0.32, z), 0.15, 0.15, (150, 150, 150))
    rear, front = (xc - half, xc - half + 0.18), (xc + half - 0.18, xc + half)
    scene.trapezoid(z, 0.65, 0.85, rear, rear, (180, 30, 30))
    scene.trapezoid(z, 0.65, 0.85, front, front, (240, 240, 210))


def _draw_pedestrian(scene: _Scene, rng: np.random.Generator) -> None:
    pose = scene.camera.pose
    z = -float(rng.uniform(0.6, 2.8))
    x = pose.x + float(rng.uniform(-8.0, 8.0))
    h = float(rng.uniform(1.55, 1.9))
    legs = CLOTHES[rng.integers(len(CLOTHES))]
    top = CLOTHES[rng.integers(len(CLOTHES))]
    skin = ((225, 190, 160), (170, 120, 90), (110, 75, 55))[rng.integers(3)]
    scene.trapezoid(z, 0.0, 0.47 * h, (x - 0.17, x + 0.17), (x - 0.2, x + 0.2), legs)
    scene.disc((x, 0.66 * h, z), 0.25, 0.2 * h, top)
    scene.disc((x, 0.91 * h, z), 0.11, 0.07 * h, skin)


def _downsample(arr: np.ndarray) -> np.ndarray:
    """Box filter the supersampled (2H, 2W, 3) float image to (H, W, 3)."""
    return (arr[0::2, 0::2] + arr[1::2, 0::2] + arr[0::2, 1::2] + arr[1::2, 1::2]) * 0.25


def _to_image(arr01: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(arr01 * 255.0), 0, 255).astype(np.uint8))


def _scene(strip: Strip, props: Sequence[Prop], pose: Pose, season: str, with_label: bool) -> _Scene:
    scene = _Scene(strip, Camera(pose), with_label)
    _draw_props(scene, props, season)
    return scene


def render_database(strip: Strip, props: Sequence[Prop], pose: Pose, rng: np.random.Generator) -> Image.Image:
    """A database image (clear summer day, the capture car's camera), ``IMAGE_HEIGHT`` x ``IMAGE_WIDTH`` RGB."""
    scene = _scene(strip, props, pose, "summer", with_label=False)
    if rng.random() < 0.2:
        _draw_car(scene, rng)
    for _ in range(min(int(rng.poisson(0.3)), 2)):
        _draw_pedestrian(scene, rng)
    arr = np.asarray(scene.rgb.reduce(SUPERSAMPLE), dtype=np.float32) * float(rng.uniform(0.95, 1.05))
    arr = arr + rng.normal(0.0, 1.2, arr.shape)
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class QueryConditions:
    """When and how a query was taken (written into its file name)."""

    night: bool
    season: str


def _sky(rng: np.random.Generator, rows: int, night: bool) -> np.ndarray:
    """(rows, 1, 3) sky colours, top to bottom, in [0, 1]."""
    t = np.linspace(0.0, 1.0, rows)[:, None]
    if night:
        top, bottom = np.array([0.02, 0.03, 0.08]), np.array([0.10, 0.09, 0.14])
    else:
        kind = rng.integers(3)
        if kind == 0:  # clear
            top = np.array([0.30, 0.50, 0.85]) + rng.normal(0, 0.04, 3)
            bottom = np.array([0.75, 0.85, 0.95]) + rng.normal(0, 0.03, 3)
        elif kind == 1:  # overcast
            grey = rng.uniform(0.65, 0.9)
            top, bottom = np.full(3, grey - 0.05), np.full(3, grey + 0.05)
        else:  # dusk
            top = np.array([0.35, 0.35, 0.6])
            bottom = np.array([0.95, 0.6, 0.4]) + rng.normal(0, 0.04, 3)
    return np.clip((1 - t) * top + t * bottom, 0, 1)[:, None, :].astype(np.float32)


def _day_light(arr: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Daylight of another day: cast shadow, colour temperature, exposure, gamma, haze."""
    h, w = label.shape
    if rng.random() < 0.4:
        # Cast shadow of the buildings behind the camera: a sloping line, shade below it.
        vv, uu = np.ogrid[0:h, 0:w]
        v0 = rng.uniform(0.2, 0.9) * h
        slope = rng.uniform(-0.35, 0.35)
        shade = (vv > v0 + slope * (uu - w / 2)) & (label != facades.LABEL_SKY)
        arr[shade] *= float(rng.uniform(0.45, 0.75))
    temperature = float(rng.uniform(-1.0, 1.0))
    gains = np.array([1 + 0.18 * temperature, 1.0, 1 - 0.18 * temperature], dtype=np.float32)
    arr = np.clip(arr * gains * float(rng.uniform(0.7, 1.25)), 0, 1) ** float(rng.uniform(0.7, 1.45))
    if rng.random() < 0.12:  # haze
        fog = float(rng.uniform(0.2, 0.45))
        arr = (1 - fog) * arr + fog * np.float32(rng.uniform(0.6, 0.85))
    return arr


def _night_light(
    arr: np.ndarray, label: np.ndarray, lamps: Sequence[Tuple[float, float, float]], rng: np.random.Generator
) -> np.ndarray:
    """Dark scene lit by street lamps (pools of light) and a random subset of windows."""
    h, w = label.shape
    vv, uu = np.ogrid[0:h, 0:w]
    light = np.full((h, w), float(rng.uniform(0.1, 0.2)), dtype=np.float32)
    halo = np.zeros((h, w), dtype=np.float32)
    for u, v, r in lamps:
        if r <= 0:
            continue
        # Separable Gaussians: a wide pool lighting the facade, a tight halo around the bulb.
        for sigma, target, gain in ((12.0 * r + 30.0, light, 0.7), (2.5 * r + 4.0, halo, 1.0)):
            profile_v = np.exp(-((vv - v) ** 2) / (2 * sigma * sigma)).astype(np.float32)
            profile_u = np.exp(-((uu - u) ** 2) / (2 * sigma * sigma)).astype(np.float32)
            target += gain * profile_v * profile_u
    arr = arr * light[:, :, None] * np.array([0.95, 0.85, 0.8], dtype=np.float32)
    arr = arr + halo[:, :, None] * np.array([0.9, 0.7, 0.4], dtype=np.float32)
    lit = rng.random(256) < rng.uniform(0.25, 0.6)
    lit[: facades.FIRST_WINDOW_LABEL] = False
    warm = np.array([1.0, 0.82, 0.5]) * rng.uniform(0.55, 1.0, (256, 1)) + rng.normal(0, 0.05, (256, 3))
    tints = np.clip(warm, 0, 1).astype(np.float32)
    mask = lit[label]
    arr[mask] = tints[label[mask]]
    return np.clip(arr, 0, 1)


def draw_occluder(img: Image.Image, fraction: float, rng: np.random.Generator, night: bool) -> Image.Image:
    """A van or bus standing right next to the camera hides ``fraction`` of the image width
    at its left or right edge (``rng`` picks the side and the vehicle). Unlike the people
    and cars drawn in the scene, it is too close for any database image to show: the query
    shares only the rest of its view with every positive, the partial-overlap case SFRS's
    region labels are about."""
    left = bool(rng.random() < 0.5)
    body = np.asarray(CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))], dtype=np.float32)
    glass_top, glass_bottom = rng.uniform(0.12, 0.22), rng.uniform(0.38, 0.48)
    seams = rng.uniform(0.0, 1.0, size=int(rng.integers(1, 4)))
    width = int(round(fraction * IMAGE_WIDTH))
    if width <= 0:
        return img
    light = 0.3 if night else float(rng.uniform(0.75, 1.05))
    arr = np.asarray(img, dtype=np.float32).copy()
    cols = slice(0, width) if left else slice(IMAGE_WIDTH - width, IMAGE_WIDTH)
    rows = np.linspace(0.0, 1.0, IMAGE_HEIGHT)[:, None, None]
    shade = 1.05 - 0.25 * rows  # light from above
    panel = np.broadcast_to(body * light * shade, (IMAGE_HEIGHT, width, 3)).copy()
    band = (rows[:, 0, 0] >= glass_top) & (rows[:, 0, 0] < glass_bottom)
    panel[band] = np.array([40.0, 48.0, 58.0]) * light
    panel[rows[:, 0, 0] >= 0.85] *= 0.25  # the shadow under the body
    for seam in seams:
        panel[:, min(int(seam * width), width - 1)] *= 0.6
    arr[:, cols] = panel
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


def render_query(
    strip: Strip, props: Sequence[Prop], pose: Pose, rng: np.random.Generator,
    occlusion: float = 0.0, occluder_rng: Optional[np.random.Generator] = None,
) -> Tuple[Image.Image, QueryConditions]:
    """A query image taken at another time: light, sky, season, occluders, blur, noise, JPEG.

    With ``occlusion`` > 0 a vehicle next to the camera hides that fraction of the width
    (:func:`draw_occluder`, drawn from ``occluder_rng`` so that everything else in the
    image is the same as without it)."""
    night = bool(rng.random() < NIGHT_PROBABILITY)
    season = SEASONS[int(rng.choice(len(SEASONS), p=QUERY_SEASON_P))]
    scene = _scene(strip, props, pose, season, with_label=True)
    for _ in range(min(int(rng.poisson(0.9)), 3)):
        _draw_car(scene, rng)
    for _ in range(min(int(rng.poisson(1.2)), 4)):
        _draw_pedestrian(scene, rng)

    arr = np.asarray(scene.rgb, dtype=np.float32) / 255.0
    label = np.asarray(scene.label)
    sky = label == facades.LABEL_SKY
    sky_colours = np.broadcast_to(_sky(rng, arr.shape[0], night), arr.shape)
    arr[sky] = sky_colours[sky]
    if night:
        arr = _night_light(arr, label, scene.lamps, rng)
    else:
        arr = _day_light(arr, label, rng)
    img = _to_image(_downsample(arr))
    if occlusion > 0:
        if occluder_rng is None:
            raise ValueError("occlusion > 0 needs occluder_rng")
        img = draw_occluder(img, occlusion, occluder_rng, night)

    if rng.random() < 0.45:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.3))))
    sigma = float(rng.uniform(4.0, 9.0) if night else rng.uniform(1.5, 5.0))
    noisy = np.asarray(img, dtype=np.float32) + rng.normal(0.0, sigma, (IMAGE_HEIGHT, IMAGE_WIDTH, 3))
    img = Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    if rng.random() < 0.35:
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=int(rng.integers(20, 56)))
        buffer.seek(0)
        img = Image.open(buffer).convert("RGB")
    return img, QueryConditions(night=night, season=season)
