"""Segmentations: rule-based tiers of the literature and learned clusters (DESIGN.md section 4).

Every method takes the per-customer feature table of :func:`clvtier.features.customer_features`
and returns a :class:`Segmentation`: one label per customer and a profile per segment.
"""

from clvtier.segment.base import Segmentation
from clvtier.segment.cluster import ValueClusters, clusters
from clvtier.segment.diagnose import Diagnosis, diagnose
from clvtier.segment.labels import LABELS
from clvtier.segment.rfm import (
    RFM10,
    RFMMap,
    load_rfm_map,
    rfm8,
    rfm_map,
    rfm_score_segments,
    rfm_scores,
)
from clvtier.segment.value import abc, abc4, clv_cs, pyramid, value_matrix
from clvtier.segment.weighted import ahp_weights, entropy_weights, normalise, weighted_score

__all__ = [
    "LABELS",
    "RFM10",
    "Diagnosis",
    "RFMMap",
    "Segmentation",
    "ValueClusters",
    "abc",
    "abc4",
    "ahp_weights",
    "clusters",
    "clv_cs",
    "diagnose",
    "entropy_weights",
    "load_rfm_map",
    "normalise",
    "pyramid",
    "rfm8",
    "rfm_map",
    "rfm_score_segments",
    "rfm_scores",
    "value_matrix",
    "weighted_score",
]
