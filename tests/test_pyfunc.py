"""The logged model as another team meets it: ``mlflow.pyfunc.load_model`` on whatever pandas read, and in an
environment where leadscore is not installed.

One model is trained and logged for the module, on a flat CRM export with a text id, whole numbers, whole
numbers with gaps, decimals with a placeholder, text with gaps, a yes/no flag and a time column.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
import time
import tomllib
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from leadscore.errors import LeadscoreError
from leadscore.features.flat import ColumnRoles, flat_feature_table, read_table_file
from leadscore.models.scoring import EXPLANATION_COLUMNS, Scorer
from leadscore.pipelines import bundle, tracking
from leadscore.pipelines.store import mlflow_at
from leadscore.pipelines.train import TrainingConfig, train_model

ROOT = Path(__file__).resolve().parent.parent
CLEAN_RUN_SECONDS = 30


def _export(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n)
    emails = rng.poisson(2, n).astype(float)
    emails[rng.random(n) < 0.2] = np.nan
    minutes = np.round(rng.gamma(2, 5, n), 1)
    source = rng.choice(["ads", "seo", "event", "partner"], n).astype(object)
    source[rng.random(n) < 0.1] = None
    trial = rng.random(n) < 0.3
    logit = -3 + 0.5 * visits + np.where(source == "partner", 1.5, 0.0) + trial + 0.05 * minutes
    frame = pd.DataFrame({
        "lead": [f"L{seed}-{i}" for i in range(n)],
        "visits": visits,
        "emails": emails,
        "minutes": minutes.astype(str),
        "source": source,
        "region": rng.choice(["north", "south"], n),
        "trial": trial,
        "created": (pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D")).strftime("%Y-%m-%d"),
        "won": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    })
    frame.loc[rng.random(n) < 0.03, "minutes"] = "?"
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pyfunc")
    _export(3_000, seed=0).to_csv(folder / "export.csv", index=False)
    table = flat_feature_table(read_table_file(folder / "export.csv"),
                               ColumnRoles(id="lead", target="won", time="created", fit=("region",)))
    result = train_model(table, TrainingConfig(min_positives=50, candidates=("logistic",)))
    logged = tracking.log_training(result, "leads", f"sqlite:///{folder / 'mlflow.db'}")
    table.to_parquet(folder / "features.parquet")
    _export(400, seed=5).to_csv(folder / "new.csv", index=False)
    return {"folder": folder, "model": result.model, "logged": logged}


@pytest.fixture(scope="module")
def loaded(trained):
    return mlflow_at(trained["logged"].tracking_uri).pyfunc.load_model(trained["logged"].model_uri)


def _feature_parquet(folder: Path) -> pd.DataFrame:
    frame = pd.read_parquet(folder / "features.parquet")
    assert isinstance(frame["source"].dtype, pd.CategoricalDtype)
    assert pd.api.types.is_datetime64_any_dtype(frame["created"])
    return frame


def _csv(folder: Path) -> pd.DataFrame:
    frame = pd.read_csv(folder / "new.csv")
    assert frame["visits"].dtype == np.int64 and frame["emails"].isna().any() and frame["trial"].dtype == bool
    return frame


def _arrow_backed(folder: Path) -> pd.DataFrame:
    frame = pd.read_csv(folder / "new.csv", dtype_backend="pyarrow")
    assert str(frame["source"].dtype) == "string[pyarrow]" and str(frame["emails"].dtype) == "double[pyarrow]"
    return frame


@pytest.mark.parametrize("read", [_feature_parquet, _csv, _arrow_backed])
def test_the_logged_model_scores_what_pandas_read_as_the_scorer_does(trained, loaded, read):
    leads = read(trained["folder"])
    scorer = Scorer(trained["model"])
    plain = loaded.predict(leads)
    assert list(plain.columns) == scorer.columns(explain=False)
    assert plain["lead"].tolist() == leads["lead"].tolist()  # one row per lead, in order, extra columns ignored
    expected = scorer.score(leads, explain=False)
    np.testing.assert_allclose(plain["probability"], expected["probability"], rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(plain, expected, check_exact=False, rtol=0, atol=1e-12)

    explained = loaded.predict(leads, params={"explain": True})
    assert list(explained.columns) == scorer.columns(explain=True)
    pd.testing.assert_frame_equal(explained, scorer.score(leads, explain=True), check_exact=False, rtol=0, atol=1e-12)
    assert explained[list(EXPLANATION_COLUMNS)].notna().all().all()


def test_the_output_schema_describes_what_predict_returns(trained, loaded):
    from mlflow.types.schema import DataType

    explained = loaded.predict(_csv(trained["folder"]), params={"explain": True})
    declared = loaded.metadata.signature.outputs.inputs
    assert [spec.name for spec in declared] == list(explained.columns)
    holds = {DataType.double: pd.api.types.is_float_dtype, DataType.long: pd.api.types.is_integer_dtype,
             DataType.string: pd.api.types.is_string_dtype}
    # The id is declared Any: it comes back in the dtype the caller gave it.
    assert [spec.name for spec in declared[1:] if not holds[spec.type](explained[spec.name])] == []


def test_a_json_request_as_mlflow_serve_reads_it_scores(trained, tmp_path):
    import mlflow
    from mlflow.models.utils import load_serving_example

    uri = trained["logged"].model_uri
    mlflow_at(trained["logged"].tracking_uri)
    request = json.loads(load_serving_example(uri))
    (tmp_path / "request.json").write_text(json.dumps({**request, "params": {"explain": True}}))
    mlflow.models.predict(uri, input_path=tmp_path / "request.json", output_path=tmp_path / "scores.json",
                          env_manager="local")
    predictions = json.loads((tmp_path / "scores.json").read_text())["predictions"]
    rows = request["dataframe_split"]
    assert [lead["lead"] for lead in predictions] == [row[rows["columns"].index("lead")] for row in rows["data"]]
    assert all(0 < lead["probability"] < 1 and json.loads(lead["reasons"]) for lead in predictions)


def test_the_model_itself_names_a_missing_column(trained, loaded):
    leads = _csv(trained["folder"])
    with pytest.raises(LeadscoreError, match="lacks 1 column.*'emails'"):
        loaded.predict(leads.drop(columns=["emails"]))
    with pytest.raises(LeadscoreError, match="has no column 'lead'"):
        loaded.predict(leads.drop(columns=["lead"]))


def test_loading_in_the_training_process_keeps_its_own_leadscore(trained, loaded):
    code = _model_code(trained).resolve()
    assert (code / "leadscore" / "models" / "scoring.py").is_file()
    from_the_model = [name for name, module in list(sys.modules.items()) if name.split(".")[0] == "leadscore"
                      and Path(getattr(module, "__file__", None) or "/").resolve().is_relative_to(code)]
    assert from_the_model == []
    assert sys.modules["leadscore.models.scoring"].Scorer is Scorer  # the class this file imported before any loading
    assert type(loaded.unwrap_python_model().model) is type(trained["model"])


def test_the_bundle_has_the_installed_layout_from_a_checkout(trained, tmp_path):
    assembled = bundle.code_folder(tmp_path)
    assert _tree(assembled) == _tree(_model_code(trained) / "leadscore")
    assert {"__init__.py", "cli/__init__.py", "crm/simulator/card.py", "features/flat.py", "models/pyfunc_code.py",
            "models/rules_simulated_crm.yaml", "pipelines/bundle.py", "serve/__init__.py"} <= set(_tree(assembled))
    assert not list(assembled.rglob("__pycache__"))  # the checkout's bytecode stays behind


def test_the_bundle_copies_every_package_the_wheel_installs():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(bundle.PACKAGES) == sorted(setuptools["packages"]) == sorted(setuptools["package-dir"])


def test_requirements_pin_the_running_versions_and_not_leadscore(trained):
    lines = _requirements(trained)
    assert not any(line.startswith("leadscore") for line in lines)
    assert lines == [f"{name}=={version(name)}" for name in bundle.SCORING_DISTRIBUTIONS]
    assert not {"sqlalchemy", "psycopg", "typer"} & {canonicalize_name(Requirement(line).name) for line in lines}


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory) -> Path:
    """A Python with leadscore's dependencies but not leadscore.

    The .pth line puts this environment's site-packages on sys.path; Python reads the .pth files only of its own
    site-packages, so the one that installs leadscore's editable finder is never run.
    """
    folder = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    shared = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(own) / "leadscore_dependencies.pth").write_text("".join(f"{path}\n" for path in shared))
    return python


CLEAN_SCORING = """
    import json, sys
    try:
        import leadscore
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"leadscore is importable before loading the model: {leadscore.__file__}")
    from importlib.metadata import packages_distributions
    import mlflow.pyfunc
    import pandas as pd

    owners = packages_distributions()

    def distributions():
        return {owner for name in list(sys.modules) for owner in owners.get(name.partition(".")[0], ())}

    with_mlflow = distributions()
    mlflow.set_tracking_uri(sys.argv[1])
    model = mlflow.pyfunc.load_model(sys.argv[2])
    model.predict(pd.read_csv(sys.argv[3])).to_parquet(sys.argv[4])
    import ast
    import leadscore

    imported_by_leadscore = {}  # top-level name: the distributions that install it (mlflow has three)
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] == "leadscore":
            for node in ast.walk(ast.parse(open(module.__file__).read())):
                if isinstance(node, ast.Import):
                    tops = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    tops = [node.module]
                else:
                    continue
                imported_by_leadscore.update({top.partition(".")[0]: owners[top.partition(".")[0]] for top in tops
                                              if top.partition(".")[0] in owners})
    print(json.dumps({"leadscore": leadscore.__file__, "distributions": sorted(distributions() - with_mlflow),
                      "imported_by_leadscore": {top: sorted(owners) for top, owners in imported_by_leadscore.items()
                                                if top != "leadscore"}}))
"""


def test_a_clean_environment_loads_the_registered_model_and_scores_alike(trained, clean_python, tmp_path):
    script = tmp_path / "score.py"
    script.write_text(textwrap.dedent(CLEAN_SCORING))
    logged = trained["logged"]
    started = time.perf_counter()
    # -I: no PYTHONPATH, no user site-packages and no script folder on sys.path, so nothing else finds leadscore.
    arguments = [logged.tracking_uri, f"models:/{logged.model_name}@challenger", trained["folder"] / "new.csv",
                 tmp_path / "scores.parquet"]
    done = subprocess.run([clean_python, "-I", script, *arguments], capture_output=True, text=True, cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert elapsed < CLEAN_RUN_SECONDS
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["leadscore"]).resolve().is_relative_to(_model_code(trained).resolve())

    scored = pd.read_parquet(tmp_path / "scores.parquet")
    expected = Scorer(trained["model"]).score(pd.read_csv(trained["folder"] / "new.csv"), explain=False)
    assert scored["lead"].tolist() == expected["lead"].tolist()
    np.testing.assert_allclose(scored["probability"], expected["probability"], rtol=0, atol=1e-12)

    # Every distribution leadscore's loaded modules import is pinned; every one loading and scoring imported, beyond
    # those importing MLflow had already loaded (some of them optional: psutil, tqdm), comes with the pins.
    pinned = {canonicalize_name(Requirement(line).name) for line in _requirements(trained)}
    unpinned = {top: owners for top, owners in report["imported_by_leadscore"].items()
                if not pinned & {canonicalize_name(owner) for owner in owners}}
    assert unpinned == {}
    imported = {canonicalize_name(name) for name in report["distributions"]} - {"leadscore"}
    assert imported - _with_dependencies(pinned) == set()


def test_the_bundle_has_the_same_layout_from_an_installed_copy(trained, clean_python, tmp_path):
    code = _model_code(trained)
    assemble = (f"import sys; sys.path.insert(0, {str(code)!r}); from pathlib import Path; "
                f"from leadscore.pipelines.bundle import code_folder; code_folder(Path({str(tmp_path)!r}))")
    subprocess.run([str(clean_python), "-I", "-c", assemble], check=True, cwd=tmp_path, capture_output=True)
    assert _tree(tmp_path / "leadscore") == _tree(code / "leadscore")


def _model_code(trained) -> Path:
    import mlflow

    mlflow_at(trained["logged"].tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(f"{trained['logged'].model_uri}/code"))


def _requirements(trained) -> list[str]:
    import mlflow

    mlflow_at(trained["logged"].tracking_uri)
    text = Path(mlflow.artifacts.download_artifacts(f"{trained['logged'].model_uri}/requirements.txt")).read_text()
    return [line for line in text.splitlines() if line.strip()]


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but bytecode, which Python writes beside the model's code when it loads in place."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts}


def _with_dependencies(names) -> set[str]:
    """The distributions ``pip install`` of ``names`` brings: them and their dependencies, recursively."""
    found, pending = set(), [canonicalize_name(name) for name in names]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        for line in needs:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return found
