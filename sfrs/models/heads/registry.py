"""The one list of heads: name -> constructor and the options ``model.head_options`` may
give it, with their types. :func:`build_head` is the only way the rest of the code makes a
head, and its error messages name the allowed heads and options."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple

from torch import nn

from sfrs.errors import ConfigError
from sfrs.models.heads.cls import ClassTokenHead
from sfrs.models.heads.crn import CRN
from sfrs.models.heads.gem import GeM
from sfrs.models.heads.mixvpr import MixVPR
from sfrs.models.heads.netvlad import NetVLAD
from sfrs.models.heads.pooling import MAC, SPoC
from sfrs.models.heads.rmac import RMAC
from sfrs.models.heads.salad import SALAD


@dataclass(frozen=True)
class HeadEntry:
    """A head's constructor (called with ``dim=`` and the options) and its option types;
    ``None`` among the types allows null (YAML ``~``)."""

    builder: Callable[..., nn.Module]
    options: Mapping[str, Tuple[type, ...]]


_HEADS: Dict[str, HeadEntry] = {
    "netvlad": HeadEntry(NetVLAD, {"clusters": (int,), "normalize_input": (bool,)}),
    "gem": HeadEntry(GeM, {"p": (float,), "eps": (float,), "fc_dim": (int, type(None))}),
    "mac": HeadEntry(MAC, {}),
    "spoc": HeadEntry(SPoC, {}),
    "rmac": HeadEntry(RMAC, {"levels": (int,)}),
    "crn": HeadEntry(CRN, {"clusters": (int,), "normalize_input": (bool,)}),
    "mixvpr": HeadEntry(MixVPR, {
        "grid": (list, tuple), "depth": (int,), "mlp_ratio": (float,), "out_channels": (int,), "out_rows": (int,),
    }),
    "salad": HeadEntry(SALAD, {
        "clusters": (int,), "cluster_dim": (int,), "token_dim": (int,), "hidden_dim": (int,),
        "sinkhorn_iterations": (int,), "dustbin_init": (float,), "dropout": (float,),
    }),
    "cls": HeadEntry(ClassTokenHead, {"fc_dim": (int, type(None))}),
}


def list_heads() -> List[str]:
    """Names accepted by :func:`build_head`."""
    return list(_HEADS)


def _accepts(types: Tuple[type, ...], value: Any) -> bool:
    if isinstance(value, bool):  # bool is an int in Python; a flag is not a count
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _type_words(types: Tuple[type, ...]) -> str:
    words = {int: "an integer", float: "a number", bool: "true or false", type(None): "null",
             list: "a list", tuple: "a list"}
    return " or ".join(dict.fromkeys(words.get(t, t.__name__) for t in types))


def build_head(name: str, dim: int, **options: Any) -> nn.Module:
    """Build head ``name`` for backbone features with ``dim`` channels.

    Options (``model.head_options``): ``netvlad`` and ``crn`` ``clusters``,
    ``normalize_input``; ``gem`` ``p``, ``eps``, ``fc_dim``; ``mac`` and ``spoc`` none;
    ``rmac`` ``levels``; ``mixvpr`` ``grid``, ``depth``, ``mlp_ratio``, ``out_channels``,
    ``out_rows``; ``salad`` ``clusters``, ``cluster_dim``, ``token_dim``, ``hidden_dim``,
    ``sinkhorn_iterations``, ``dustbin_init``, ``dropout``; ``cls`` ``fc_dim``.
    Defaults are those of the constructors. Unknown names, unknown options and values of
    the wrong type are :class:`ConfigError`.
    """
    if name not in _HEADS:
        raise ConfigError(f"unknown head '{name}'; choose one of {', '.join(_HEADS)}")
    entry = _HEADS[name]
    for key, value in options.items():
        if key not in entry.options:
            known = ", ".join(entry.options) or "none"
            raise ConfigError(
                f"head '{name}' has no option '{key}' (its options: {known}); "
                "model.head_options must match model.head"
            )
        if not _accepts(entry.options[key], value):
            raise ConfigError(
                f"head '{name}': option '{key}' must be {_type_words(entry.options[key])}, got {value!r}"
            )
    return entry.builder(dim=dim, **options)
