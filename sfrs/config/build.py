"""Building a configuration: dataclass <-> plain dict with type checks, YAML files and
``--set key=value`` overrides, in one direction (defaults <- YAML <- flags <- --set)."""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from sfrs.errors import ConfigError

_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"


class NumberLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 numbers: PyYAML follows YAML 1.1, where ``1e-4``
    (no dot) is a string and ``010`` is octal 8; here both read as Python reads them.
    Booleans, null and the rest stay YAML 1.1."""


NumberLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_FLOAT_TAG, _INT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
NumberLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$"), list("-+0123456789"),
)
NumberLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
                    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    # base 0 would refuse "010", which YAML 1.2 reads as decimal 10
    return int(text, 0 if text[:2].lower() in ("0x", "0o", "0b") else 10)


NumberLoader.add_constructor(_INT_TAG, _construct_int)


def parse_yaml(text: str) -> Any:
    """YAML text -> Python values, numbers read as Python reads them (:class:`NumberLoader`)."""
    return yaml.load(text, Loader=NumberLoader)  # safe: NumberLoader is a SafeLoader


def to_dict(obj: Any) -> Any:
    """A plain YAML-serialisable structure (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config '{where or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key '{key}' (known here: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is Any:
        return value
    if origin in (Union, getattr(types, "UnionType", Union)):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"config key '{key}' has a wrong type")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{key}' must have {len(args)} items, got {len(value)}")
            items = [_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_type = args[0] if args else Any
            items = [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        value_type = args[1] if args else Any
        return {str(k): _coerce(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        return _finite_number(value, key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9][0-9_]*\s*", value):
            return int(value)  # exact, where a float would round large values
        number = _finite_number(value, key, "an integer")
        if not number.is_integer():
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return int(number)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if tp is str:
        # a name that looks like a number ("5", a split "2019") arrives from YAML as one
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"config key '{key}': unsupported type {_type_name(tp)}")




def _finite_number(value: Any, key: str, kind: str = "a number") -> float:
    """``value`` as a float: a number or its text (``"1e-4"``, ``".5"``); not nan or inf."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"config key '{key}' must be {kind}, got {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"config key '{key}' must be {kind}, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
    return number


def load_yaml(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections")
    return data


def _is_table(tp: Any) -> bool:
    """``Dict[str, Dict[...]]``: named entries, each a mapping of options (``loss.terms``)."""
    args = typing.get_args(tp)
    return typing.get_origin(tp) is dict and len(args) == 2 and typing.get_origin(args[1]) is dict


def merge(cls: type, base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge ``update`` into ``base`` following the dataclass ``cls``: a section (a nested
    dataclass) is merged key by key, and so is a table of named entries such as
    ``loss.terms`` (a YAML that adds a term keeps the others; an entry's options merge);
    any other value, including a free-form mapping such as ``model.head_options`` and
    lists, is replaced as a whole. Unknown keys are kept for :func:`from_dict` to reject
    with their full name."""
    hints = typing.get_type_hints(cls)
    out = dict(base)
    for key, value in update.items():
        field_type = hints.get(key)
        current = out.get(key)
        if dataclasses.is_dataclass(field_type) and isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = merge(field_type, current, value)
        elif _is_table(field_type) and isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = {
                **current,
                **{name: {**current.get(name, {}), **entry} if isinstance(entry, Mapping) else entry
                   for name, entry in value.items()},
            }
        else:
            out[key] = value
    return out


def parse_override(text: str) -> Tuple[List[str], Any]:
    """``"a.b=3"`` -> (["a", "b"], 3); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value '{raw}'") from None
    return key.split("."), value


#: (choice, its options): the options configure that choice, so a layer that changes the
#: choice starts from ``{}`` (the new choice's own defaults) before its own settings apply.
OWNED_OPTIONS: Tuple[Tuple[str, str], ...] = (("model.head", "model.head_options"),)


def build_config(
    cls: type,
    yaml_path: Optional[Union[str, Path]] = None,
    overrides: Sequence[str] = (),
    direct: Optional[Mapping[str, Any]] = None,
) -> Any:
    """Defaults <- YAML file <- ``direct`` dotted values (CLI flags) <- ``--set`` overrides.

    Each of the three is a layer: a layer that changes ``model.head`` without setting
    ``model.head_options`` leaves the options at ``{}`` (:data:`OWNED_OPTIONS`), so
    ``--set model.head=rmac`` does not inherit NetVLAD's ``clusters``; options the same
    layer sets (whole or ``model.head_options.levels=2``) apply on top of ``{}``.
    """
    data = to_dict(cls())
    if yaml_path is not None:
        layer = load_yaml(yaml_path)
        data = _apply_layer(data, lambda base: merge(cls, base, layer))
    settings = [(dotted.split("."), value) for dotted, value in (direct or {}).items() if value is not None]
    settings_layers = [settings, [parse_override(text) for text in overrides]]
    for layer_settings in settings_layers:
        data = _apply_layer(data, lambda base, items=layer_settings: _set_all(base, items))
    return from_dict(cls, data)


def _set_all(data: Dict[str, Any], settings: Sequence[Tuple[Sequence[str], Any]]) -> Dict[str, Any]:
    for path, value in settings:
        data = _set_dotted(data, path, value)
    return data


_MISSING = object()


def _get_dotted(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, Mapping) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _apply_layer(data: Dict[str, Any], apply) -> Dict[str, Any]:
    """``apply(data)``, or, when that changes a choice of :data:`OWNED_OPTIONS`,
    ``apply`` on ``data`` with that choice's options emptied first."""
    updated = apply(data)
    base = data
    for choice, options in OWNED_OPTIONS:
        if _get_dotted(data, choice) != _get_dotted(updated, choice) and _get_dotted(data, options) is not _MISSING:
            base = _set_dotted(base, options.split("."), {})
    return updated if base is data else apply(base)


def _set_dotted(data: Dict[str, Any], path: Sequence[str], value: Any) -> Dict[str, Any]:
    """Set ``value`` at ``path``; list items are addressed by index (``generations.1.epochs``)
    and ``generations.*.epochs`` sets the key in every item."""
    head, rest = path[0], list(path[1:])
    out = dict(data)
    if not rest:
        out[head] = value
        return out
    child = out.get(head)
    if isinstance(child, list):
        items = list(child)
        index = rest[0]
        if index == "*":
            targets = range(len(items))
        else:
            try:
                targets = [int(index)]
                items[targets[0]]
            except (ValueError, IndexError):
                raise ConfigError(
                    f"config key '{head}.{index}': index must be '*' or 0..{len(items) - 1}"
                ) from None
        for i in targets:
            if len(rest) == 1:
                items[i] = value
            else:
                if not isinstance(items[i], Mapping):
                    raise ConfigError(f"config key '{head}.{i}' is not a mapping")
                items[i] = _set_dotted(dict(items[i]), rest[1:], value)
        out[head] = items
        return out
    if child is not None and not isinstance(child, Mapping):
        raise ConfigError(f"config key '{head}' is a value, not a section")
    out[head] = _set_dotted(dict(child or {}), rest, value)
    return out


def save_yaml(config: Any, path: Union[str, Path]) -> None:
    from sfrs.utils.io import atomic_write_text  # imports torch: only when writing

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(config), sort_keys=False))


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


