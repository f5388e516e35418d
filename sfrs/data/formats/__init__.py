"""One reader per on-disk format; :func:`open_dataset` picks the reader from a spec string.

Specs: ``synthetic`` / ``synthetic:<size>`` (the procedural city, generated and cached on
first use), a VG folder (``<root>/images/<split>/{database,queries}``), a NetVLAD
``.mat`` file (with ``images_root``), or MSLS in its native layout (``msls:<root>``, or a
folder holding ``train_val/`` / ``test/`` city folders, detected automatically). A NetVLAD
.mat describes one split, so a spec may name the file per split with a ``{split}``
placeholder: ``/data/pitts30k_{split}.mat``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from sfrs.data.geo import Split
from sfrs.errors import DataError

SYNTHETIC_PREFIX = "synthetic"
MSLS_PREFIX = "msls:"
DEFAULT_SYNTHETIC_SIZE = "small"

__all__ = ["open_dataset", "describe_dataset_spec"]


def _synthetic_size(spec: str) -> Optional[str]:
    """The size of a ``synthetic[:size]`` spec, or None when ``spec`` is not synthetic."""
    if spec == SYNTHETIC_PREFIX:
        return DEFAULT_SYNTHETIC_SIZE
    if spec.startswith(SYNTHETIC_PREFIX + ":"):
        size = spec[len(SYNTHETIC_PREFIX) + 1:]
        if not size:
            raise DataError(f"dataset '{spec}': missing size after 'synthetic:'")
        return size
    return None


def open_dataset(
    spec: str,
    split: str,
    images_root: Optional[Union[str, Path]] = None,
    protocol: Optional[str] = None,
) -> Split:
    """Open one split of a data set described by ``spec``.

    Args:
        spec: ``synthetic``, ``synthetic:<size>``, a VG folder, a NetVLAD ``.mat`` file,
            ``msls:<root>`` or an MSLS root folder (``train_val/`` or ``test/`` with city
            folders); ``{split}`` in the spec is replaced by ``split``.
        split: ``train``, ``val`` or ``test``. For a ``.mat`` file it must equal the file's
            ``whichSet`` (each .mat describes one split).
        images_root: image folder of a ``.mat`` spec (required there, unused otherwise).
        protocol: MSLS evaluation protocol, ``official`` (default) or ``all`` (see
            :func:`sfrs.data.formats.msls.read_msls`); ignored by the other formats.
    Raises:
        DataError: unknown or missing path, missing ``images_root`` for a .mat file, or any
            reader error.
    """
    spec = str(spec).replace("{split}", split)
    if spec.startswith(MSLS_PREFIX):
        from sfrs.data.formats.msls import read_msls

        msls_root = spec[len(MSLS_PREFIX):]
        if not msls_root:
            raise DataError(f"dataset '{spec}': missing folder after '{MSLS_PREFIX}'")
        return read_msls(Path(msls_root).expanduser(), split, protocol=protocol or "official")
    size = _synthetic_size(spec)
    if size is not None:
        # Imported here: the generator is heavy and only needed for this spec.
        from sfrs.data.formats.vg_folder import read_vg_split
        from sfrs.data.synthetic import ensure_synthetic

        root = ensure_synthetic(size=size)
        return read_vg_split(root, split, name=f"{SYNTHETIC_PREFIX}:{size}")

    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(
            f"{spec}: data set not found (expected 'synthetic[:size]', a VG folder, a NetVLAD .mat file "
            f"or an MSLS folder)"
        )
    if path.is_dir():
        from sfrs.data.formats.msls import is_msls_root, read_msls
        from sfrs.data.formats.vg_folder import read_vg_split

        if not (path / "images").is_dir() and is_msls_root(path):
            return read_msls(path, split, protocol=protocol or "official")
        return read_vg_split(path, split)
    if path.suffix.lower() == ".mat":
        from sfrs.data.formats.netvlad_mat import read_netvlad_mat

        if images_root is None:
            raise DataError(f"{spec}: a NetVLAD .mat data set needs --images-root (the folder with its images)")
        result = read_netvlad_mat(path, images_root)
        if result.split != split:
            raise DataError(
                f"{spec}: describes split '{result.split}' (whichSet) but split '{split}' was requested"
            )
        return result
    raise DataError(f"{spec}: not a data set (expected a VG folder or a NetVLAD .mat file)")


def describe_dataset_spec(spec: str) -> str:
    """One human line saying how ``spec`` will be read (no file is opened)."""
    spec = str(spec)
    try:
        size = _synthetic_size(spec)
    except DataError as exc:
        return str(exc)
    if size is not None:
        return f"synthetic city '{size}' (VG folder generated and cached on first use)"
    if spec.startswith(MSLS_PREFIX):
        return f"MSLS native layout {spec[len(MSLS_PREFIX):]} (train_val/ and test/ city folders, CSV metadata)"
    path = Path(spec).expanduser()
    if path.is_dir() and not (path / "images").is_dir():
        from sfrs.data.formats.msls import is_msls_root

        if is_msls_root(path):
            return f"MSLS native layout {spec} (train_val/ and test/ city folders, CSV metadata)"
    if path.suffix.lower() == ".mat" and not path.is_dir():
        return f"NetVLAD .mat specification {spec} (images under --images-root)"
    return f"VG folder {spec} (images/<split>/{{database,queries}}, UTM from '@' file names)"
