"""Grid entries (``--grid KEY=V1,V2``) and the configurations of their Cartesian product.

Syntax of one entry: ``KEY=V1,V2,...``. Each value is what ``--set KEY=VALUE`` accepts
(a YAML value: ``0.001``, ``1e-3``, ``sgd``, ``[96,128]``, ``{clusters: 8}``). Values are
separated by the commas that stand outside brackets, braces and quotes, so a list or a
mapping is written as it is (``model.input_size=[96,128],[128,160]``: two values), and a
string holding a comma is quoted (``data.dataset="a,b",c``: the values ``a,b`` and ``c``).

A configuration is named from its values in grid order, ``key=value`` joined by commas
(``optim.lr=0.001,optim.optimizer=sgd``), with characters a file name should not hold
replaced by ``_``; names that would collide, or be too long for a folder, get a short hash.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import yaml

from sfrs.config.build import parse_yaml
from sfrs.errors import ConfigError

_OPENING = {"[": "]", "{": "}"}
#: characters kept in a configuration's folder name; the others become "_"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+\-\[\]{}:@*]")
#: folder names stay well under the 255 bytes most file systems allow
MAX_NAME_LENGTH = 120
#: the keys a sweep sets itself
RESERVED_KEYS = ("seed",)


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid`` entry: ``key`` and its values, each as written (``texts``, passed on
    as ``--set key=text``) and as parsed (``values``)."""

    entry: str
    key: str
    texts: Tuple[str, ...]
    values: Tuple[Any, ...]

    def override(self, index: int) -> str:
        return f"{self.key}={self.texts[index]}"


@dataclass(frozen=True)
class Configuration:
    """One point of the grid: ``name`` (its folder under ``runs/``), the varied keys'
    ``values`` and the ``--set`` ``overrides`` that make it."""

    name: str
    values: Dict[str, Any]
    overrides: Tuple[str, ...]


def split_values(text: str, entry: str) -> List[str]:
    """``text`` cut at the commas outside brackets, braces and quotes (each piece stripped).

    Raises:
        ConfigError: unbalanced brackets or quotes, or an empty value, naming ``entry``.
    """
    pieces, current, closers, quote = [], [], [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in _OPENING:
            closers.append(_OPENING[char])
        elif char in "]}":
            if not closers or closers.pop() != char:
                raise ConfigError(f"--grid '{entry}': unmatched '{char}'")
        elif char == "," and not closers:
            pieces.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if quote or closers:
        raise ConfigError(f"--grid '{entry}': unclosed {quote or closers[-1].replace(']', '[').replace('}', '{')!r}")
    pieces.append("".join(current).strip())
    if any(not p for p in pieces):
        raise ConfigError(f"--grid '{entry}': empty value (values are separated by commas: KEY=V1,V2)")
    return pieces


def parse_grid_entry(entry: str) -> GridAxis:
    """``"optim.lr=0.001,0.01"`` -> :class:`GridAxis`.

    Raises:
        ConfigError: no ``=``, no key, an empty or unparsable value, a value given twice,
            or a key the sweep sets itself (``seed``: use the seeds options), naming the entry.
    """
    if "=" not in entry:
        raise ConfigError(f"--grid '{entry}': expected KEY=V1,V2,...")
    key, raw = (part.strip() for part in entry.split("=", 1))
    if not key or not re.fullmatch(r"[A-Za-z0-9_.*]+", key):
        raise ConfigError(f"--grid '{entry}': expected KEY=V1,V2,... with a dotted config key")
    if key in RESERVED_KEYS:
        raise ConfigError(f"--grid '{entry}': the sweep sets '{key}' itself; use --seeds or --seed-list")
    texts = split_values(raw, entry)
    values = []
    for text in texts:
        try:
            values.append(parse_yaml(text))
        except yaml.YAMLError:
            raise ConfigError(f"--grid '{entry}': cannot parse value '{text}'") from None
    seen = [_canonical(v) for v in values]
    repeated = sorted({s for s in seen if seen.count(s) > 1})
    if repeated:
        raise ConfigError(f"--grid '{entry}': value {repeated[0]} given twice")
    return GridAxis(entry=entry, key=key, texts=tuple(texts), values=tuple(values))


def parse_grid(entries: Sequence[str]) -> List[GridAxis]:
    """Every ``--grid`` entry parsed; a key may be varied by one entry only."""
    axes = [parse_grid_entry(e) for e in entries]
    keys = [a.key for a in axes]
    for axis in axes:
        if keys.count(axis.key) > 1:
            raise ConfigError(f"--grid '{axis.entry}': key '{axis.key}' is varied by more than one --grid")
    return axes


def format_value(value: Any) -> str:
    """A value as a configuration name shows it: ``0.001``, ``sgd``, ``[96,128]``, ``true``."""
    if isinstance(value, str):
        return value
    return _canonical(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).replace('"', "") \
        if isinstance(value, (list, dict, bool)) or value is None else repr(value)


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def configurations(axes: Sequence[GridAxis]) -> List[Configuration]:
    """The Cartesian product of ``axes`` in grid order (the last axis varies fastest);
    no axis gives one configuration, ``default``."""
    if not axes:
        return [Configuration(name="default", values={}, overrides=())]
    found = []
    for indexes in itertools.product(*(range(len(a.values)) for a in axes)):
        readable = ",".join(f"{a.key}={format_value(a.values[i])}" for a, i in zip(axes, indexes))
        found.append((readable, {a.key: a.values[i] for a, i in zip(axes, indexes)},
                      tuple(a.override(i) for a, i in zip(axes, indexes))))
    safe = [_safe(readable) for readable, _, _ in found]
    result = []
    for (readable, values, overrides), name in zip(found, safe):
        if safe.count(name) > 1 or len(name) > MAX_NAME_LENGTH or name in (".", ".."):
            name = f"{name[:MAX_NAME_LENGTH - 9]}~{_short_hash(readable)}"
        result.append(Configuration(name=name, values=values, overrides=overrides))
    return result


def parse_seed_list(text: str) -> List[int]:
    """``"0,3,7"`` -> [0, 3, 7] (distinct non-negative integers)."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seed-list '{text}': expected integers separated by commas, e.g. 0,3,7") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seed-list '{text}': seeds must be distinct and not negative")
    return seeds
