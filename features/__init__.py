"""Point-in-time features, their registry, labels and snapshot policies.

The names below are imported on first use, so that importing one module of
the package (the registry, say, from a scoring server) loads only what it needs.
"""

from importlib import import_module

_WHERE = {
    "CRM_FEATURES": "crm_features",
    "FeatureRegistry": "registry",
    "FeatureSpec": "registry",
    "FeatureTable": "table",
    "build_features": "build",
    "crm_feature_table": "build",
    "mql_moments": "snapshots",
    "open_leads_at": "snapshots",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
