"""Retrieval with a trained network: descriptors of image lists and splits (in memory,
sharded over torchrun processes, or streamed to HDF5), faiss search, Recall@N reports,
PCA-whitening fits, predictions CSVs, retrieval grids and maps; test-time methods (query
crops, test image size, k-reciprocal re-ranking, reduced precision).

Import retrieval names from here (``from sfrs.retrieval import evaluate, search``).
"""
from sfrs.retrieval.eval_sweep import (
    SWEEP_KEYS,
    leading_components,
    parse_sweep,
    render_sweep_markdown,
    run_eval_sweep,
)
from sfrs.retrieval.evaluate import Evaluation, evaluate, evaluate_split
from sfrs.retrieval.export import write_descriptor_file, write_descriptors
from sfrs.retrieval.extract import extract_descriptors, extract_descriptors_sharded
from sfrs.retrieval.index import build_index, search, search_index
from sfrs.retrieval.pca import attach_pca, fit_model_pca, fit_pca_whitening
from sfrs.retrieval.protocol import NO_QUERY_RESIZE, EvalProtocol, describe_protocol, resolve_protocol
from sfrs.retrieval.map_plot import MapPoints, map_points, save_map
from sfrs.retrieval.predictions import ground_truth, write_predictions_csv, write_split_predictions
from sfrs.retrieval.recall import (
    correct_matrix,
    count_queries_without_positive,
    per_query_first_correct_rank,
    recall_at_n,
    recall_breakdown,
    spatial_nms,
)
from sfrs.retrieval.report import (
    Ranking,
    format_report,
    rank_database,
    ranked_predictions,
    ranked_report,
    recall_report,
)
from sfrs.retrieval.rerank import farthest_squared_distances, knn_graph, rerank_candidates
from sfrs.retrieval.split_descriptors import extract_split, stream_prefix
from sfrs.retrieval.test_time import TEST_METHODS, RerankSettings, TestTime, ViewEncoder
from sfrs.retrieval.view_search import majority_votes, merge_majority_voting, merge_nearest, rerank_top, search_views
from sfrs.retrieval.stream import Descriptors, HDF5Descriptors, extract_to_hdf5, search_hdf5
from sfrs.retrieval.unlabelled import retrieve
from sfrs.retrieval.visual import (
    example_queries,
    failure_queries,
    path_grid,
    retrieval_grid,
    save_image,
    save_retrieval_examples,
)

__all__ = [
    # evaluation of a split
    "evaluate",
    "evaluate_split",
    "Evaluation",
    "EvalProtocol",
    "resolve_protocol",
    "describe_protocol",
    "NO_QUERY_RESIZE",
    "extract_split",
    "stream_prefix",
    "recall_report",
    "ranked_report",
    "ranked_predictions",
    "rank_database",
    "Ranking",
    "format_report",
    "write_descriptors",
    "write_descriptor_file",
    # test time: query views and their merge, image sizes, re-ranking, precision
    "TestTime",
    "TEST_METHODS",
    "RerankSettings",
    "ViewEncoder",
    "search_views",
    "merge_nearest",
    "merge_majority_voting",
    "majority_votes",
    "rerank_top",
    "rerank_candidates",
    "knn_graph",
    "farthest_squared_distances",
    # evaluation-only sweeps (threshold, image size, PCA dimension)
    "run_eval_sweep",
    "parse_sweep",
    "render_sweep_markdown",
    "leading_components",
    "SWEEP_KEYS",
    # descriptors and search
    "extract_descriptors",
    "extract_descriptors_sharded",
    "Descriptors",
    "HDF5Descriptors",
    "extract_to_hdf5",
    "search_hdf5",
    "search",
    "build_index",
    "search_index",
    # Recall@N
    "recall_at_n",
    "recall_breakdown",
    "per_query_first_correct_rank",
    "correct_matrix",
    "count_queries_without_positive",
    "spatial_nms",
    # PCA-whitening
    "fit_pca_whitening",
    "fit_model_pca",
    "attach_pca",
    # predictions (with or without ground truth)
    "retrieve",
    "write_predictions_csv",
    "write_split_predictions",
    "ground_truth",
    # pictures
    "retrieval_grid",
    "path_grid",
    "example_queries",
    "failure_queries",
    "save_image",
    "save_retrieval_examples",
    "map_points",
    "MapPoints",
    "save_map",
]
