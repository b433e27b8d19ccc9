"""What a logged model carries so that it loads where leadscore is not installed: its code and its requirements.

No index serves leadscore, so a model that only named ``leadscore==0.1.0``
could not be loaded or served anywhere but on the machine that trained it.
Each model therefore carries a copy of leadscore's packages, laid out as a
wheel installs them, and names the distributions scoring imports, pinned to
the versions it was trained with.

When the model is loaded, MLflow puts the copy's folder first on
``sys.path`` and then runs ``models/pyfunc_code.py``. Where a leadscore is
installed too, whichever of the two the process imports first is used
whole, never a mix: a process that imported leadscore already (``train``,
``predict``, a notebook) keeps it, because Python finds ``leadscore`` in
its module cache and its subpackages through ``leadscore.__path__``, never
through ``sys.path``; a fresh process (``mlflow models serve``, another
team's job) gets the model's own copy, the code its pickle was written by.
"""

from __future__ import annotations

from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

# The distribution's packages, as `[tool.setuptools] packages` in pyproject.toml lists them (a test keeps the
# two equal). Each may live anywhere in an editable checkout (`leadscore.crm` is the folder crm/); a wheel puts
# them all under leadscore/.
PACKAGES = (
    "leadscore",
    "leadscore.cli",
    "leadscore.crm",
    "leadscore.crm.simulator",
    "leadscore.crm.tryton",
    "leadscore.crm.tryton.module",
    "leadscore.features",
    "leadscore.pipelines",
    "leadscore.models",
    "leadscore.serve",
)
# What a wheel installs from each package folder: modules and package data. A checkout's other files
# (notebooks, scratch data, caches) stay behind.
INSTALLED_SUFFIXES = (".py", ".yaml")
# The distributions that importing leadscore.models.pyfunc and unpickling a model load (tests/test_pyfunc.py
# checks them in an environment without leadscore). Scoring needs no database driver, CLI or plotting library.
SCORING_DISTRIBUTIONS = ("mlflow", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "lightgbm", "numba", "rich")


def code_folder(parent: Path) -> Path:
    """``parent/leadscore``: a copy of the running leadscore with a wheel's layout, from either layout."""
    root = parent / "leadscore"
    for package in PACKAGES:
        target = root.joinpath(*package.split(".")[1:])
        target.mkdir(parents=True, exist_ok=True)
        for entry in files(package).iterdir():
            if entry.is_file() and entry.name.endswith(INSTALLED_SUFFIXES):
                (target / entry.name).write_bytes(entry.read_bytes())
    return root


def requirements() -> list[str]:
    """What loading and scoring the model needs, pinned to this environment; declaring them spares MLflow a slow probe."""
    return [f"{distribution}=={version(distribution)}" for distribution in SCORING_DISTRIBUTIONS]
