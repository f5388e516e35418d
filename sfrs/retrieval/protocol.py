"""The evaluation protocol of one split: its data set's conventions, then explicit overrides.

Every evaluation (``sfrs-eval``, ``tools/eval_all.py``, validation during training) resolves
its protocol here, so that one checkpoint gets one number per data set whichever command
computed it, and every report says where each value came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from sfrs.data import Split, conventions_for
from sfrs.errors import ConfigError

#: ``query_resize`` override meaning "resize queries like the database" (``--no-query-resize``).
NO_QUERY_RESIZE = 0
USER_OVERRIDE = "user override"


@dataclass(frozen=True)
class EvalProtocol:
    """How one split is evaluated, and why.

    Attributes:
        conventions: the name whose conventions were looked up (``tokyo247``, ``my_city``...).
        known: False when no benchmark goes by that name (the default protocol applies).
        threshold_m: positive radius in metres.
        nms: spatial non-maximum suppression by database place.
        query_resize: None = queries resized like database images; N = shorter side of N pixels.
        sources: field -> ``conventions of <name>``, ``default protocol`` or ``user override``.
        notes: what a report should say about the protocol.
    """

    conventions: str
    known: bool
    threshold_m: float
    nms: bool
    query_resize: Optional[int]
    sources: Tuple[Tuple[str, str], ...]
    notes: Tuple[str, ...] = ()

    def source(self, key: str) -> str:
        return dict(self.sources)[key]

    @property
    def overridden(self) -> Tuple[str, ...]:
        """The fields a user set to something other than the conventions' value."""
        return tuple(key for key, source in self.sources if source == USER_OVERRIDE)

    def to_json(self) -> Dict[str, Any]:
        return {
            "conventions": self.conventions if self.known else None, "threshold_m": self.threshold_m,
            "nms": self.nms, "query_resize": self.query_resize, "sources": dict(self.sources),
            "notes": list(self.notes),
        }


def describe_query_resize(query_resize: Optional[int]) -> str:
    return "like the database" if query_resize is None else f"shorter side {query_resize} px, aspect kept"


def describe_protocol(protocol: Dict[str, Any]) -> str:
    """One line from :meth:`EvalProtocol.to_json`: each value with where it came from; with
    the test-time fields of an evaluation report (method, image sizes, re-ranking,
    precision), those too."""
    sources = protocol["sources"]
    line = (
        f"positives within {protocol['threshold_m']:g} m ({sources['threshold_m']}); "
        f"{'spatial NMS' if protocol['nms'] else 'no NMS'} ({sources['nms']}); "
    )
    if "query_images" not in protocol:
        return line + (f"queries resized {describe_query_resize(protocol['query_resize'])} "
                       f"({sources['query_resize']})")
    source = sources["query_resize"]
    shown = protocol["test_method"] == "single" or source.startswith("replaced")
    line += (f"test method {protocol['test_method']}; database {protocol['database_images']}; "
             f"queries {protocol['query_images']}" + (f" ({source})" if shown else ""))
    rerank = protocol.get("rerank")
    if rerank:
        line += (f"; k-reciprocal re-ranking of the top {rerank['top']} (k1 {rerank['k1']}, k2 {rerank['k2']}, "
                 f"lambda {rerank['lambda']:g}, {rerank['distance']} distance)")
    line += f"; {protocol['precision']}" + (", channels-last" if protocol.get("channels_last") else "")
    return line


def resolve_protocol(
    split: Split,
    name: Optional[str] = None,
    *,
    threshold: Optional[float] = None,
    nms: Optional[bool] = None,
    query_resize: Optional[int] = None,
) -> EvalProtocol:
    """The conventions of ``name`` (default ``split.dataset``), then the overrides given.

    An override equal to the conventions' value keeps the conventions as its source.
    ``query_resize``: None keeps the conventions, :data:`NO_QUERY_RESIZE` resizes queries
    like the database, N > 0 gives them a shorter side of N pixels. Spatial NMS that comes
    from the conventions is dropped, with a note, on a split without database place ids;
    asked for explicitly it is kept (the search then names the split in a DataError).

    Raises:
        ConfigError: a radius or query size that is not positive.
    """
    conventions = conventions_for(name if name is not None else split.dataset)
    origin = conventions.source
    notes = [conventions.notes] if conventions.notes else []
    if threshold is not None and not threshold > 0:
        raise ConfigError(f"positive radius must be positive, got {threshold:g} m")
    if query_resize is not None and (isinstance(query_resize, bool) or query_resize < 0):
        raise ConfigError(f"query resize must be a positive pixel count, got {query_resize}")

    def pick(key: str, convention: Any, given: bool, override: Any) -> Tuple[Any, str]:
        if not given or override == convention:
            return convention, origin
        notes.append(f"{key} {_shown(override)} instead of {_shown(convention)} of the {origin}: {USER_OVERRIDE}")
        return override, USER_OVERRIDE

    values = {
        "threshold_m": pick("threshold_m", conventions.threshold_m, threshold is not None,
                            None if threshold is None else float(threshold)),
        "nms": pick("nms", conventions.nms, nms is not None, nms),
        "query_resize": pick("query_resize", conventions.query_resize, query_resize is not None, query_resize or None),
    }
    if nms is None and values["nms"][0] and split.database_place_ids is None:
        values["nms"] = (False, f"{origin}, not applied: the split has no database place ids")
        notes.append("spatial NMS of the conventions NOT applied: the split has no database place ids")
    return EvalProtocol(
        conventions=conventions.name, known=conventions.known, threshold_m=values["threshold_m"][0],
        nms=values["nms"][0], query_resize=values["query_resize"][0],
        sources=tuple((key, source) for key, (_, source) in values.items()), notes=tuple(notes),
    )


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)
