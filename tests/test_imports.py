"""Scoring loads no database code: the model, its explanations and the features import no SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["leadscore.models.model", "leadscore.models.explain", "leadscore.features", "leadscore.features.build",
     "leadscore.crm.history", "leadscore.crm.movement", "leadscore.crm.vocabulary", "leadscore.crm.conform"],
)
def test_model_and_feature_modules_import_no_database_code(module):
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'psycopg') "
        "or m in ('leadscore.crm.bulk', 'leadscore.crm.sql', 'leadscore.crm.database', 'leadscore.crm.schema'))\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"{module} loads {done.stdout.strip()}"


def test_the_features_package_still_offers_its_names():
    from leadscore import features

    assert features.FeatureTable.__name__ == "FeatureTable"
    assert callable(features.build_features)
    with pytest.raises(AttributeError):
        features.nothing_here  # noqa: B018
