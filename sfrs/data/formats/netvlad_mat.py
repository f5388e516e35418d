"""Reader of NetVLAD ``.mat`` split specifications (Pitts30k/250k, Tokyo 24/7, TokyoTM).

``scipy.io.loadmat(path)['dbStruct']`` is a MATLAB struct (Arandjelovic et al., NetVLAD,
CVPR 2016). Fields are read by *name*: TokyoTM inserts ``dbTimeStamp``/``qTimeStamp``
after the UTM fields, which breaks readers that index fields by position. See
``shared/spec/datasets.md`` section 2. :data:`NETVLAD_MAT` declares the format to the
registry; a .mat file describes one split, so a spec may name it per split with a
``{split}`` placeholder (``/data/pitts30k_{split}.mat``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from sfrs.data.conventions import canonical_name, split_suffix
from sfrs.data.formats.base import DatasetFormat, DatasetLocation
from sfrs.data.geo import Split
from sfrs.errors import DataError

PathLike = Union[str, Path]

DATABASE_FOLDERS = ("images",)
QUERY_FOLDERS = ("queries_real", "query", "queries")


def read_netvlad_mat(mat_path: PathLike, images_root: PathLike, name: Optional[str] = None) -> Split:
    """Read a NetVLAD ``.mat`` specification and resolve its images under ``images_root``.

    Args:
        mat_path: e.g. ``pitts30k_test.mat``, ``tokyo247.mat``, ``tokyoTM_val.mat``.
        images_root: folder holding the images. A name is taken as given, relative to
            ``images_root``, when that file exists (``queries/x.jpg``); else database files
            are under ``images_root/images/`` when that folder exists and queries under the
            first existing of ``queries_real/``, ``query/``, ``queries/`` (else ``images_root``).
        name: data set name for reports; default the file stem without ``_<whichSet>``.
    Returns:
        A :class:`Split` whose ``split`` is the file's ``whichSet``; database place ids group
        the views of one place (same folder and file-name prefix before the first ``_``);
        ``query_attributes['timestamp']`` holds ``qTimeStamp`` when present.
    Raises:
        DataError: unreadable file, no ``dbStruct``, missing or inconsistent fields, missing images.
    """
    import scipy.io  # here, not at the top: importing sfrs.data stays cheap

    mat_path = Path(mat_path)
    try:
        contents = scipy.io.loadmat(str(mat_path))
    except FileNotFoundError:
        raise DataError(f"{mat_path}: file does not exist") from None
    except Exception as exc:  # scipy raises several types (ValueError, MatReadError, TypeError...)
        raise DataError(f"{mat_path}: cannot read MATLAB file ({_one_line(exc)})") from None
    if "dbStruct" not in contents:
        keys = sorted(k for k in contents if not k.startswith("__"))
        raise DataError(f"{mat_path}: no 'dbStruct' variable (keys found: {', '.join(keys) or 'none'})")
    return split_from_db_struct(contents["dbStruct"], mat_path, images_root, name=name)


def split_from_db_struct(
    db_struct: Any, mat_path: PathLike, images_root: PathLike, name: Optional[str] = None
) -> Split:
    """Build a :class:`Split` from a loaded ``dbStruct``.

    Accepts the shapes ``scipy.io.loadmat`` produces with default options (a (1, 1) record
    array whose cells are (N, 1) object arrays of (1,) string arrays), with
    ``squeeze_me=True`` (0-d record, (N,) object arrays, bare strings and scalars, a (2,)
    UTM for one image), with ``struct_as_record=False`` (``mat_struct``) or
    ``simplify_cells=True`` (dict); cells may also be MATLAB char matrices.
    """
    mat_path = Path(mat_path)
    fields = _struct_fields(db_struct, mat_path)

    def required(key: str) -> Any:
        if key not in fields:
            raise DataError(f"{mat_path}: dbStruct has no field '{key}' (fields: {', '.join(fields)})")
        return fields[key]

    which_set = _strings(required("whichSet"), mat_path, "whichSet")
    if len(which_set) != 1 or not which_set[0]:
        raise DataError(f"{mat_path}: dbStruct.whichSet is not a single string")
    which_set_name = which_set[0]
    db_files = _strings(required("dbImageFns"), mat_path, "dbImageFns")
    q_files = _strings(required("qImageFns"), mat_path, "qImageFns")
    db_utm = _utm(required("utmDb"), len(db_files), mat_path, "utmDb")
    q_utm = _utm(required("utmQ"), len(q_files), mat_path, "utmQ")
    for key, expected in (("numImages", len(db_files)), ("numQueries", len(q_files))):
        if key in fields:
            count = _scalar(fields[key], mat_path, key)
            if count != expected:
                raise DataError(f"{mat_path}: dbStruct.{key} is {count:g} but the file lists {expected} names")

    attributes: Dict[str, np.ndarray] = {}
    if "qTimeStamp" in fields:
        stamps = np.asarray(fields["qTimeStamp"], dtype=np.float64).reshape(-1)
        if stamps.size != len(q_files):
            raise DataError(
                f"{mat_path}: dbStruct.qTimeStamp has {stamps.size} values for {len(q_files)} queries"
            )
        attributes["timestamp"] = stamps

    root = Path(images_root)
    if not root.is_dir():
        raise DataError(f"{root}: images root of {mat_path.name} does not exist")
    db_root = _first_existing(root, DATABASE_FOLDERS)
    q_root = _first_existing(root, QUERY_FOLDERS)
    db_paths = _resolve(root, db_root, db_files)
    q_paths = _resolve(root, q_root, q_files)
    missing = [p for p in db_paths + q_paths if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"{mat_path}: {len(missing):,} of {len(db_paths) + len(q_paths):,} images missing "
            f"(first: {missing[0]}; database under {db_root}, queries under {q_root})"
        )

    threshold = ""
    if "posDistThr" in fields:
        threshold = f", posDistThr {_scalar(fields['posDistThr'], mat_path, 'posDistThr'):g} m"
    if name is None:
        name = re.sub(rf"[_-]{re.escape(which_set_name)}$", "", mat_path.stem) or mat_path.stem
    return Split(
        dataset=name,
        split=which_set_name,
        database_paths=db_paths,
        query_paths=q_paths,
        database_utm=db_utm,
        query_utm=q_utm,
        database_place_ids=place_ids_from_names(db_files),
        query_attributes=attributes,
        protocol=f"NetVLAD {mat_path.name} (whichSet {which_set_name}{threshold})",
    )


def place_ids_from_names(relative_paths: Sequence[str]) -> np.ndarray:
    """int64 place ids: one place per (folder, file-name prefix before the first ``_``).

    Pitts: ``000/000123_pitch1_yaw4.jpg`` -> the 24 views of place ``000123``. Tokyo 24/7:
    the views of one panorama share a folder (and prefix). Ids follow first appearance.
    """
    ids: Dict[tuple, int] = {}
    result = np.empty(len(relative_paths), dtype=np.int64)
    for i, rel in enumerate(relative_paths):
        folder, base = os.path.split(rel.replace("\\", "/"))
        key = (folder, base.split("_", 1)[0])
        result[i] = ids.setdefault(key, len(ids))
    return result


# -- MATLAB shapes ------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _struct_fields(db_struct: Any, mat_path: Path) -> Dict[str, Any]:
    """Field name -> value of a loaded MATLAB struct, whatever loadmat option produced it."""
    if isinstance(db_struct, dict):
        return dict(db_struct)
    if hasattr(db_struct, "_fieldnames"):  # scipy.io.matlab.mat_struct
        return {key: getattr(db_struct, key) for key in db_struct._fieldnames}
    if isinstance(db_struct, np.ndarray) and db_struct.dtype.names:
        if db_struct.size != 1:
            raise DataError(f"{mat_path}: dbStruct is a struct array of shape {db_struct.shape}, expected 1x1")
        # Record fields are object arrays of the struct's shape; .flat[0] unwraps (1,1) and ().
        return {key: db_struct[key].flat[0] for key in db_struct.dtype.names}
    if isinstance(db_struct, np.ndarray) and db_struct.dtype == object and db_struct.size == 1:
        return _struct_fields(db_struct.flat[0], mat_path)
    raise DataError(f"{mat_path}: dbStruct is not a MATLAB struct (got {type(db_struct).__name__})")


def _strings(value: Any, mat_path: Path, key: str) -> List[str]:
    """Flatten a cell array of strings (any nesting loadmat produces) or a char matrix."""
    out: List[str] = []

    def visit(item: Any) -> None:
        if isinstance(item, (str, np.str_)):
            # char matrices pad shorter rows with spaces; file names never end in spaces.
            out.append(str(item).rstrip(" \0"))
        elif isinstance(item, bytes):
            out.append(item.decode("utf-8").rstrip(" \0"))
        elif isinstance(item, np.ndarray) and item.dtype.kind in "US":
            if item.size == 0:
                out.append("")  # an empty MATLAB char array ''
            for element in item.reshape(-1):
                visit(element)
        elif isinstance(item, (np.ndarray, list, tuple)):
            for element in np.asarray(item, dtype=object).reshape(-1):
                visit(element)
        else:
            raise DataError(f"{mat_path}: dbStruct.{key} holds {type(item).__name__}, expected strings")

    visit(value)
    return out


def _utm(value: Any, count: int, mat_path: Path, key: str) -> np.ndarray:
    """(count, 2) float64 from the 2 x N MATLAB matrix (also (2,) for one image, or N x 2)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{mat_path}: dbStruct.{key} is not numeric") from None
    if array.ndim == 1 and array.size == 2 and count == 1:
        return array.reshape(1, 2)
    if array.ndim == 2 and array.shape == (2, count):
        return np.ascontiguousarray(array.T)
    if array.ndim == 2 and array.shape == (count, 2):
        return array
    raise DataError(f"{mat_path}: dbStruct.{key} has shape {array.shape}, expected (2, {count})")


def _scalar(value: Any, mat_path: Path, key: str) -> float:
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "iuf":
        raise DataError(f"{mat_path}: dbStruct.{key} is not a number")
    return float(array.reshape(-1)[0])


def _first_existing(root: Path, names: Sequence[str]) -> Path:
    for folder in names:
        if (root / folder).is_dir():
            return root / folder
    return root


def _existing(path: str) -> Optional[str]:
    """``path``, or its ``.png`` twin for a missing ``.jpg`` (Tokyo 24/7 database), or None."""
    if os.path.isfile(path):
        return path
    stem, ext = os.path.splitext(path)
    if ext.lower() in (".jpg", ".jpeg") and os.path.isfile(stem + ".png"):
        return stem + ".png"
    return None


def _resolve(images_root: Path, folder: Path, relative_paths: Sequence[str]) -> List[str]:
    """Absolute paths: relative to ``images_root`` as given when that file exists (names
    that already start with ``queries/``), else under the detected ``folder``; a missing
    path is kept under ``folder`` for the error message."""
    root, base = os.path.abspath(images_root), os.path.abspath(folder)
    paths = []
    for rel in relative_paths:
        under_folder = os.path.join(base, rel)
        as_given = _existing(os.path.join(root, rel)) if base != root else None
        paths.append(as_given or _existing(under_folder) or under_folder)
    return paths


# -- the format ----------------------------------------------------------------------------


def _detect(spec: str) -> bool:
    path = Path(spec).expanduser()
    return path.suffix.lower() == ".mat" and path.is_file()


def _describe(spec: str) -> str:
    return f"NetVLAD .mat specification {spec} (images under --images-root)"


def _open(spec: str, split: str, images_root: Optional[str], protocol: Optional[str]) -> Split:
    if images_root is None:
        raise DataError(f"{spec}: a NetVLAD .mat data set needs --images-root (the folder with its images)")
    result = read_netvlad_mat(Path(spec).expanduser(), images_root)
    if result.split != split:
        raise DataError(f"{spec}: describes split '{result.split}' (whichSet) but split '{split}' was requested")
    return result


def _which_set(mat_path: Path) -> str:
    """``dbStruct.whichSet`` of a NetVLAD .mat file (for names without ``_<split>``)."""
    import scipy.io

    try:
        db_struct = scipy.io.loadmat(str(mat_path), simplify_cells=True)["dbStruct"]
        which = db_struct["whichSet"]
    except KeyError as exc:
        raise DataError(f"{mat_path}: no dbStruct.{exc.args[0]} (needed to know which split it describes)") from None
    except Exception as exc:  # scipy raises several types
        raise DataError(f"{mat_path}: cannot read MATLAB file ({_one_line(exc)})") from None
    if not isinstance(which, str) or not which:
        raise DataError(f"{mat_path}: dbStruct.whichSet is not a single string")
    return which


def _discover(folder: Path) -> List[DatasetLocation]:
    """Data sets described by ``<folder>/*.mat`` (``pitts30k_test.mat``, ``tokyo247.mat``,
    ``my_city_test.mat``), images in that same folder; per data set the test file, else val.
    A benchmark's file without a split suffix is opened to read ``whichSet``; a file of any
    other name is opened too, and skipped when it holds no readable ``dbStruct``."""
    by_name: Dict[str, Dict[str, Path]] = {}
    for mat in sorted(folder.glob("*.mat")):
        if not mat.is_file():
            continue
        base, suffix = split_suffix(mat.stem)
        name = canonical_name(base, allow_split_suffix=False)
        if name is not None:
            split = suffix or _which_set(mat)
        else:
            try:
                split = _which_set(mat)
            except DataError:
                continue  # some other MATLAB file
            name = base if suffix == split else mat.stem  # as read_netvlad_mat names it
        by_name.setdefault(name, {}).setdefault(split, mat)
    found = []
    for name, splits in by_name.items():
        split = next((s for s in ("test", "val") if s in splits), None)
        if split is not None:
            found.append(DatasetLocation(name, str(splits[split]), str(folder), "mat", split, splits[split]))
    return found


NETVLAD_MAT = DatasetFormat(
    name="mat",
    spec_help="a NetVLAD .mat file (with --images-root; '{split}' in its name stands for the split)",
    detect=_detect,
    describe=_describe,
    open=_open,
    discover=_discover,
    name_suffixes=(".mat",),
)
