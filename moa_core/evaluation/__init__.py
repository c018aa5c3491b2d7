"""Evaluation of well-level embeddings: the MOAProfiler paper's analyses plus mAP.

One module per analysis (each documents its definitions, pair conventions and tie rules):

- :mod:`.filtering` - test-well selection (drop DMSO, single-compound MOAs, multi-MOA);
- :mod:`.similarity` - validated PCC matrix (one float64 matrix product);
- :mod:`.enrichment` - odds ratio / one-sided Fisher test at PCC percentiles;
- :mod:`.intra_inter` - intra- vs inter-MOA mean PCC;
- :mod:`.knn` - k-NN MOA prediction for every k;
- :mod:`.latent` - leave-one-out class latent (MLE) assignment;
- :mod:`.logistic` - one-vs-rest logistic regression;
- :mod:`.groups` - three pair groups with z-tests;
- :mod:`.holdout` - held-out compound prediction (individual / aggregated vote);
- :mod:`.classification` - image-field AUPRC / accuracy, edge vs non-edge;
- :mod:`.batch` - same-MOA PCC within vs across plates;
- :mod:`.map` - copairs mAP (phenotypic activity / consistency);
- :mod:`.per_moa` - per-MOA precision/recall/F1, confusion counts, PCA embedding map;
- :mod:`.bootstrap` - bootstrap CIs;
- :mod:`.results` - the tidy result schema; :mod:`.suite` - run everything.
"""

from .batch import BatchEffectResult, batch_effect, batch_effect_from_similarity
from .bootstrap import (
    BootstrapCI,
    bootstrap_enrichment_odds_ratio,
    bootstrap_intra_inter_delta,
    bootstrap_query_metric,
    bootstrap_weights,
    percentile_ci,
)
from .classification import ClassificationResult, classification_metrics, is_edge_well, plate_dimensions
from .compare import PerMoaComparison, common_test_wells, compare_holdout, compare_methods, compare_per_moa
from .enrichment import (
    DEFAULT_PERCENTILES,
    EnrichmentResult,
    enrichment,
    enrichment_from_similarity,
    odds_ratio,
)
from .filtering import filter_test_wells, is_multi_moa
from .groups import GROUP_NAMES, ThreeGroupResult, three_group_pcc, three_groups_from_similarity, z_test
from .holdout import HoldoutResult, compound_holdout_eval
from .intra_inter import IntraInterResult, intra_inter_from_similarity, intra_inter_moa, pair_summary
from .knn import KNNResult, knn_curves, knn_from_similarity, neighbor_order
from .latent import LatentResult, class_latent_assignment, latent_from_array, leave_one_out_medians
from .logistic import LogisticResult, logistic_regression_eval
from .map import MapResult, phenotypic_activity, phenotypic_consistency
from .per_moa import (
    MoaPredictions,
    confusion_counts,
    embedding_map,
    moa_predictions,
    per_moa_breakdown,
    per_moa_metrics,
)
from .results import RESULT_COLUMNS, concat_results, result_row, results_frame
from .similarity import (
    feature_matrix,
    pearson_cross,
    pearson_similarity,
    pearson_similarity_matrix,
    row_center_normalize,
)
from .suite import SuiteResult, evaluate_embeddings, run_embedding_suite

__all__ = [
    "common_test_wells",
    "compare_holdout",
    "compare_methods",
    "compare_per_moa",
    "PerMoaComparison",
    "MoaPredictions",
    "confusion_counts",
    "embedding_map",
    "moa_predictions",
    "per_moa_breakdown",
    "per_moa_metrics",
    "DEFAULT_PERCENTILES",
    "GROUP_NAMES",
    "RESULT_COLUMNS",
    "BatchEffectResult",
    "BootstrapCI",
    "ClassificationResult",
    "EnrichmentResult",
    "HoldoutResult",
    "IntraInterResult",
    "KNNResult",
    "LatentResult",
    "LogisticResult",
    "MapResult",
    "SuiteResult",
    "ThreeGroupResult",
    "batch_effect",
    "batch_effect_from_similarity",
    "bootstrap_enrichment_odds_ratio",
    "bootstrap_intra_inter_delta",
    "bootstrap_query_metric",
    "bootstrap_weights",
    "class_latent_assignment",
    "classification_metrics",
    "compound_holdout_eval",
    "concat_results",
    "enrichment",
    "enrichment_from_similarity",
    "evaluate_embeddings",
    "feature_matrix",
    "filter_test_wells",
    "intra_inter_from_similarity",
    "intra_inter_moa",
    "is_edge_well",
    "is_multi_moa",
    "knn_curves",
    "knn_from_similarity",
    "latent_from_array",
    "leave_one_out_medians",
    "logistic_regression_eval",
    "neighbor_order",
    "odds_ratio",
    "pair_summary",
    "pearson_cross",
    "pearson_similarity",
    "pearson_similarity_matrix",
    "percentile_ci",
    "phenotypic_activity",
    "phenotypic_consistency",
    "plate_dimensions",
    "result_row",
    "results_frame",
    "row_center_normalize",
    "run_embedding_suite",
    "three_group_pcc",
    "three_groups_from_similarity",
    "z_test",
]
