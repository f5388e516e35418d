"""Data set analysis without a model: ground-truth statistics of each split (counts,
positives per query, distance to the nearest database image, UTM extent) and their figures.

Import analysis names from here (``from sfrs.analysis import dataset_stats``).
"""
from sfrs.analysis.report import dataset_stats
from sfrs.analysis.stats import SplitStats, split_stats

__all__ = ["dataset_stats", "split_stats", "SplitStats"]
