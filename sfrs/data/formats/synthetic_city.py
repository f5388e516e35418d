"""The ``synthetic[:size[:key=value...]]`` spec: the procedural city, a VG folder generated
and cached on first use.

Options after the size, separated by colons: ``seed=N`` (another city of the same size)
and ``occlusion=F`` (every query has a vehicle next to the camera hiding that fraction of
its width, 0 to 0.9), e.g. ``synthetic:small:occlusion=0.5`` or ``synthetic:tiny:seed=1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sfrs.data.formats.base import DatasetFormat
from sfrs.data.formats.vg_folder import read_vg_split
from sfrs.data.geo import Split
from sfrs.errors import DataError

SCHEME = "synthetic"
DEFAULT_SIZE = "small"
SPEC_OPTIONS = ("seed", "occlusion")


@dataclass(frozen=True)
class SyntheticSpec:
    """A parsed ``synthetic`` spec: which city to generate or reuse."""

    size: str = DEFAULT_SIZE
    seed: int = 0
    occlusion: float = 0.0

    @property
    def name(self) -> str:
        """The canonical spec: size, then the options that differ from the default city."""
        options = ([f"seed={self.seed}"] if self.seed else []) + \
            ([f"occlusion={self.occlusion:g}"] if self.occlusion else [])
        return ":".join([SCHEME, self.size, *options])


def parse_synthetic_spec(spec: str) -> Optional[SyntheticSpec]:
    """The city a ``synthetic[:size[:key=value...]]`` spec names, or None when ``spec`` is
    not synthetic. Values are checked here (type) and by the generator (range)."""
    if spec != SCHEME and not spec.startswith(SCHEME + ":"):
        return None
    parts = spec.split(":")[1:]
    if not parts:
        return SyntheticSpec()
    size, options = parts[0], parts[1:]
    if not size:
        raise DataError(f"dataset '{spec}': missing size after '{SCHEME}:'")
    values = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in SPEC_OPTIONS:
            raise DataError(f"dataset '{spec}': '{option}' is not an option of the synthetic city "
                            f"(options: {', '.join(k + '=...' for k in SPEC_OPTIONS)})")
        try:
            values[key] = int(value) if key == "seed" else float(value)
        except ValueError:
            kind = "an integer" if key == "seed" else "a number"
            raise DataError(f"dataset '{spec}': {key} must be {kind}, got '{value}'") from None
    return SyntheticSpec(size=size, **values)


def synthetic_size(spec: str) -> Optional[str]:
    """The size of a ``synthetic[:size...]`` spec, or None when ``spec`` is not synthetic."""
    parsed = parse_synthetic_spec(spec)
    return parsed.size if parsed is not None else None


def _detect(spec: str) -> bool:
    return spec == SCHEME or spec.startswith(SCHEME + ":")


def _describe(spec: str) -> str:
    try:
        parsed = parse_synthetic_spec(spec)
    except DataError as exc:
        return str(exc)
    extra = f", seed {parsed.seed}" if parsed.seed else ""
    extra += f", queries {parsed.occlusion:.0%} occluded" if parsed.occlusion else ""
    return f"synthetic city '{parsed.size}'{extra} (VG folder generated and cached on first use)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    parsed = parse_synthetic_spec(spec)
    # Imported here: the generator is heavy and only needed for this spec.
    from sfrs.data.synthetic import ensure_synthetic

    root = ensure_synthetic(size=parsed.size, seed=parsed.seed, occlusion=parsed.occlusion)
    return read_vg_split(root, split, name=parsed.name)


SYNTHETIC_CITY = DatasetFormat(
    name="synthetic",
    # The sizes are spelled out rather than read from sfrs.data.synthetic, which would load the generator.
    spec_help="synthetic[:tiny|small|medium] (the procedural city, generated on first use; options after the "
              "size: :seed=N, :occlusion=F = fraction of each query hidden by a vehicle next to the camera)",
    detect=_detect,
    describe=_describe,
    open=_open,
)
