"""Published Recall@1 of reference methods, to plot our numbers against (``--compare``).

Every value has a source (:func:`published_source`): the method's own paper, except the
SFRS values other than Pitts250k and Tokyo 24/7. The SFRS paper (Ge et al., ECCV 2020)
reports only those two; the other SFRS values come from later papers' comparison tables
that are not identified here, so they are marked unsourced. Values read from a chart are
approximate (:data:`PUBLISHED_APPROXIMATE`, shown with ``~``).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List

#: Published Recall@1 (percent) of reference methods; ``published_source`` gives the
#: source of each value.
PUBLISHED_R1: Dict[str, Dict[str, float]] = {
    "NetVLAD VGG16 (4096)": {"pitts30k": 84.1},
    "SFRS (4096)": {
        "pitts30k": 89.4, "pitts250k": 90.7, "tokyo247": 85.4, "msls_val": 70.0, "nordland": 16.1,
        "sped": 80.2, "amstertime": 29.7, "st_lucia": 75.9,
    },
    "ResNet-18 + GeM (benchmark re-impl.)": {"pitts30k": 77.8, "msls_val": 35.3},
    "ResNet-18 + NetVLAD (benchmark re-impl.)": {"pitts30k": 86.4, "msls_val": 47.4},
    "MixVPR R50 (4096)": {
        "pitts30k": 91.6, "pitts250k": 94.3, "msls_val": 88.2, "nordland": 58.4, "sped": 85.0, "amstertime": 40.0,
    },
    "SALAD DINOv2 (8448)": {"pitts30k": 92.5, "pitts250k": 95.1, "msls_val": 92.2, "nordland": 76.0, "sped": 92.1},
    "BoQ DINOv2 (12288)": {
        "pitts30k": 93.7, "pitts250k": 96.6, "msls_val": 93.8, "nordland": 81.3, "sped": 92.5,
        "amstertime": 63.0, "st_lucia": 99.9,
    },
}
#: values read from a chart (approximate, "~").
PUBLISHED_APPROXIMATE = {
    ("MixVPR R50 (4096)", "sped"), ("MixVPR R50 (4096)", "amstertime"), ("SALAD DINOv2 (8448)", "pitts30k"),
}
_BENCHMARK_PAPER = "Berton et al., Deep Visual Geo-localization Benchmark, CVPR 2022"
#: the paper each method's row comes from.
METHOD_PAPERS: Dict[str, str] = {
    "NetVLAD VGG16 (4096)": "Arandjelovic et al., NetVLAD, CVPR 2016",
    "SFRS (4096)": "Ge et al., Self-supervising Fine-grained Region Similarities, ECCV 2020",
    "ResNet-18 + GeM (benchmark re-impl.)": _BENCHMARK_PAPER,
    "ResNet-18 + NetVLAD (benchmark re-impl.)": _BENCHMARK_PAPER,
    "MixVPR R50 (4096)": "Ali-bey et al., MixVPR, WACV 2023",
    "SALAD DINOv2 (8448)": "Izquierdo & Civera, Optimal Transport Aggregation for VPR (SALAD), CVPR 2024",
    "BoQ DINOv2 (12288)": "Ali-bey et al., BoQ: A Place is Worth a Bag of Learnable Queries, CVPR 2024",
}
#: values that are not in the method's own paper and whose source is not identified.
PUBLISHED_UNSOURCED = {
    ("SFRS (4096)", name) for name in ("pitts30k", "msls_val", "nordland", "sped", "amstertime", "st_lucia")
}
UNSOURCED = "unsourced: from a later paper's comparison table, not identified"
#: where a report points for the numbers: this file, which ships with the package.
PUBLISHED_SOURCE = (
    "sfrs/reports/published.py (PUBLISHED_R1; the source of each value in published_source, "
    "'~' = approximate, read from a chart)"
)


def published_source(method: str, dataset: str) -> str:
    """The paper a published value comes from, or :data:`UNSOURCED`."""
    return UNSOURCED if (method, dataset) in PUBLISHED_UNSOURCED else METHOD_PAPERS[method]


def published_entries(datasets: Iterable[str]) -> List[Dict[str, Any]]:
    """The published values on ``datasets``: method, dataset, r1, approximate, source."""
    wanted = list(datasets)
    return [
        {"method": method, "dataset": name, "r1": values[name],
         "approximate": (method, name) in PUBLISHED_APPROXIMATE, "source": published_source(method, name)}
        for method, values in PUBLISHED_R1.items() for name in wanted if name in values
    ]
#: benchmarks served in several versions (query counts, thresholds): a published number
#: is comparable only with the version named next to it.
VERSION_DEPENDENT = ("nordland", "msls_val")
VERSION_CAVEAT = (
    "Nordland and MSLS come in several versions (query counts, thresholds): their published "
    "numbers are comparable only with the version named next to them."
)
