"""Point-in-time features, their registry, labels and snapshot policies."""

from leadscore.features.build import build_features, crm_feature_table
from leadscore.features.crm_features import CRM_FEATURES
from leadscore.features.registry import FeatureRegistry, FeatureSpec
from leadscore.features.snapshots import mql_moments, open_leads_at
from leadscore.features.table import FeatureTable

__all__ = [
    "CRM_FEATURES",
    "FeatureRegistry",
    "FeatureSpec",
    "FeatureTable",
    "build_features",
    "crm_feature_table",
    "mql_moments",
    "open_leads_at",
]
