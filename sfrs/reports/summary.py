"""What a cross-dataset run produced, as written to ``report.json``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from sfrs.reports.published import PUBLISHED_SOURCE, published_entries


@dataclass
class EvalAllSummary:
    """Results of a run: ``results`` (name -> report of ``sfrs-eval --json`` plus
    ``name``, ``checkpoint``, ``notes``), ``skipped`` (requested, not found),
    ``failed`` (name -> one-line error)."""

    checkpoint: str
    datasets_root: str
    options: Dict[str, Any]
    results: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)
    pca: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "checkpoint": self.checkpoint, "datasets_root": self.datasets_root, "options": self.options,
            "pca": self.pca, "results": self.results, "skipped": self.skipped, "failed": self.failed,
            "published_source": PUBLISHED_SOURCE, "published": published_entries(self.results),
        }
