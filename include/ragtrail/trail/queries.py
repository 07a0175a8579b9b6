"""Ask the trail: what ran, how the latest version did, how a metric moved, which run was best.

The trail's read side (:mod:`ragtrail.trail.runs` writes it). It imports ``mlflow`` lazily and nothing
from Airflow, so a notebook, the ``ragtrail`` CLI and the REST API in the Airflow API server all answer
from the same code. Every answer is plain
JSON-able data and carries the MLflow UI URL of what it describes (``mlflow_url``).

A *pipeline run* is one DAG run: its parent MLflow run, with the roll-up's status (FINISHED / PARTIAL /
FAILED, or RUNNING while in flight), params (the run's configuration) and summed metrics.

Example::

    from ragtrail.trail.queries import Trail

    trail = Trail()                                   # MLFLOW_TRACKING_URI or the data folder's store
    trail.latest("handbook")["run"]["status"]         # "FINISHED"
    trail.trend("handbook", "vector_count", by="version")["points"]
    trail.compare(product="handbook", last=5)["diff"]
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ragtrail.core.products import experiment_name
from ragtrail.core.settings import load as load_settings
from ragtrail.trail import names
from ragtrail.trail.analysis import parse_time, product_summary, side_by_side, totals, trend_points
from ragtrail.trail.guard import Policy
from ragtrail.trail.names import quote as _q
from ragtrail.trail.rows import latest_tries, pipeline_run, task_rows

STATUSES = ("FINISHED", "PARTIAL", "FAILED", "RUNNING", "KILLED")
CONFIG_PARAMS = ("chunk_size", "chunk_overlap", "embedder", "batch_size", "source")
TREND_METRICS = (names.VECTOR_COUNT, names.CHUNK_COUNT, names.EMBEDDINGS_PER_SECOND, names.DURATION_S, names.NDCG_AT_10,
                 names.RECALL_AT_10, names.LATENCY_P95_MS)
PARENT_RUNS, TASK_RUNS = f"tags.`{names.ROLE_TAG}` = 'parent'", f"tags.`{names.ROLE_TAG}` = 'task'"  # filters


class Trail:
    """Queries over the MLflow trail of ragtrail pipeline runs.

    Args:
        tracking_uri: MLflow server or store; default ``MLFLOW_TRACKING_URI`` or the data folder's.
        ui_url: base URL of the MLflow UI for links; default ``RAGTRAIL_MLFLOW_UI_URL``.
        client: a (guarded) ``MlflowClient``-like object to use for every call, e.g. one whose single
            budget bounds a whole request; default: a guarded client with a fresh guard per MLflow call.
        policy: the guard's policy when no client is given (default: :meth:`Policy.from_env`).
    """

    def __init__(self, tracking_uri: str | None = None, ui_url: str | None = None, client: Any = None,
                 policy: Policy | None = None):
        settings = load_settings()
        self.tracking_uri = tracking_uri or settings.mlflow_tracking_uri
        self.ui_url = (ui_url or settings.mlflow_ui_url).rstrip("/")
        self._client, self._policy = client, policy

    @property
    def client(self):
        if self._client is not None:
            return self._client
        # A fresh guard per call: a long-lived Trail (a notebook) never stays "given up".
        from ragtrail.trail.client import guarded_client

        return guarded_client(self._policy, self.tracking_uri)

    # -- URLs -------------------------------------------------------------------------------------
    def experiment_url(self, experiment_id: str) -> str:
        return names.experiment_url(self.ui_url, experiment_id)

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return names.run_url(self.ui_url, experiment_id, run_id)

    def compare_url(self, experiment_ids: list[str], run_ids: list[str]) -> str:
        return names.compare_url(self.ui_url, experiment_ids, run_ids)

    # -- products ---------------------------------------------------------------------------------
    def experiment(self, product: str):
        """The product's MLflow experiment. Raises ``LookupError`` when it has no runs yet."""
        name = experiment_name(product)
        exp = self.client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage != "active":
            raise LookupError(f"product {product!r} has no runs yet (no experiment {name!r} at {self.tracking_uri})")
        return exp

    def products(self, kind: str = "product") -> list[dict]:
        """Every product with a pipeline experiment: name, id, experiment, URL (``kind="dag"``: listener's DAGs)."""
        exps, token = [], None
        while True:
            page = self.client.search_experiments(filter_string=f"tags.`{names.KIND_TAG}` = {_q(kind)}",
                                                  max_results=1000, page_token=token)
            exps.extend(page)
            token = page.token
            if not token:
                break
        out = [{"product": e.tags.get(names.PRODUCT_TAG), "product_id": e.tags.get(names.PRODUCT_ID_TAG),
                "experiment_id": e.experiment_id, "experiment_name": e.name,
                "mlflow_url": self.experiment_url(e.experiment_id)} for e in exps]
        # Only experiments this prefix names (another prefix is another installation).
        return sorted((p for p in out if p["product"] and experiment_name(p["product"]) == p["experiment_name"]),
                      key=lambda p: p["product"])

    # -- runs -------------------------------------------------------------------------------------
    def _pipeline_run(self, run) -> dict:
        return pipeline_run(run, self.run_url(run.info.experiment_id, run.info.run_id))

    def _search(self, exp_ids: list[str], filter_string: str, order_by: list[str], limit: int | None) -> list:
        runs, token = [], None
        while limit is None or len(runs) < limit:
            want = 1000 if limit is None else min(1000, limit - len(runs))
            try:
                page = self.client.search_runs(exp_ids, filter_string, max_results=want, order_by=order_by,
                                               page_token=token)
            except Exception as err:  # a filter MLflow cannot parse is the caller's mistake
                if getattr(err, "error_code", None) == "INVALID_PARAMETER_VALUE":
                    raise ValueError(f"bad filter or order: {getattr(err, 'message', err)}") from err
                raise
            runs.extend(page)
            token = page.token
            if not token:
                break
        return runs

    def runs(self, product: str, *, version: str | None = None, status: str | None = None,
             where: str | None = None, since: Any = None, until: Any = None, order_by: str = "start_time",
             ascending: bool = False, limit: int | None = 20) -> dict:
        """List and search a product's pipeline runs.

        Args:
            version: only this version.
            status: FINISHED, PARTIAL, FAILED, RUNNING or KILLED.
            where: an MLflow filter over the runs' params and metrics, e.g.
                ``"metrics.vector_count > 100 and params.chunk_size = '200'"``.
            since, until: start time bounds (ISO date/time, epoch seconds, or an age like ``7d``).
            order_by: ``start_time`` or a metric name (``vector_count``, ``duration_s``…).
            ascending: oldest / smallest first (default newest / largest first).
            limit: at most this many runs (``None``: all).

        Returns:
            ``{"product", "experiment_id", "mlflow_url", "runs": [pipeline run, …]}``.
        """
        exp = self.experiment(product)
        clauses = [PARENT_RUNS]
        if version:
            clauses.append(f"tags.`{names.VERSION_TAG}` = {_q(version)}")
        if status:
            status = status.upper()
            if status not in STATUSES:
                raise ValueError(f"status must be one of {', '.join(STATUSES)}")
            clauses.append(f"attributes.status = {_q(status)}" if status in ("RUNNING", "KILLED")
                           else f"tags.`{names.STATUS_TAG}` = {_q(status)}")
        if since is not None and since != "":
            clauses.append(f"attributes.start_time >= {parse_time(since)}")
        if until is not None and until != "":
            clauses.append(f"attributes.start_time <= {parse_time(until)}")
        if where:
            clauses.append(where)
        direction = "ASC" if ascending else "DESC"
        key = "attributes.start_time" if order_by in ("start_time", "time") else f"metrics.`{order_by}`"
        order = [f"{key} {direction}"] + ([] if key == "attributes.start_time" else ["attributes.start_time DESC"])
        found = self._search([exp.experiment_id], " and ".join(clauses), order, limit)
        return {"product": product, "experiment_id": exp.experiment_id,
                "mlflow_url": self.experiment_url(exp.experiment_id),
                "runs": [self._pipeline_run(r) for r in found]}

    def _get_run(self, run_id: str):
        try:
            return self.client.get_run(run_id)
        except Exception as err:
            if getattr(err, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise LookupError(f"no MLflow run {run_id!r} at {self.tracking_uri}") from err
            raise

    def run(self, run_id: str) -> dict:
        """One pipeline run by its (parent) MLflow run id."""
        return self._pipeline_run(self._get_run(run_id))

    def for_dag_run(self, dag_id: str, airflow_run_id: str) -> dict:
        """The pipeline run (parent run) of one Airflow DAG run, across products. Raises ``LookupError``."""
        exp_ids = [p["experiment_id"] for p in self.products() + self.products("dag")]
        found = self._search(exp_ids, f"{PARENT_RUNS} and tags.`{names.DAG_TAG}` = {_q(dag_id)} "
                                      f"and tags.`{names.RUN_TAG}` = {_q(airflow_run_id)}",
                             ["attributes.start_time ASC"], 1) if exp_ids else []
        if not found:
            raise LookupError(f"no MLflow pipeline run for DAG run {dag_id} / {airflow_run_id} (yet)")
        return self._pipeline_run(found[0])

    def tasks(self, run_id: str) -> dict:
        """Per-task breakdown of a pipeline run: each task's latest try with its status, duration,
        metrics, params and error, in pipeline order."""
        parent = self._get_run(run_id)
        exp_id = parent.info.experiment_id
        children = self._search([exp_id], f"tags.`{names.PARENT_TAG}` = {_q(run_id)} and {TASK_RUNS}", ["attributes.start_time ASC"], None)
        latest, tries = latest_tries(children)
        rows = task_rows(latest, tries, lambda run: self.run_url(exp_id, run))
        return {"run_id": run_id, "experiment_id": exp_id, "mlflow_url": self.run_url(exp_id, run_id),
                "missing_runs": self._pipeline_run(parent)["missing_runs"], "tasks": rows}

    def latest(self, product: str) -> dict:
        """How the product's latest version did: its newest finished pipeline run (status, rolled-up
        metrics), the configuration it built with, and its per-task breakdown.

        Returns:
            ``{"product", "version", "run", "config", "tasks", "running", "mlflow_url"}``; ``running``
            lists pipeline runs still in flight.
        """
        found = self.runs(product, limit=50)["runs"]
        done = [r for r in found if r["mlflow_status"] != "RUNNING"]
        running = [r for r in found if r["mlflow_status"] == "RUNNING"]
        if not done:
            raise LookupError(f"product {product!r} has no finished pipeline run yet")
        run = done[0]
        tasks = self.tasks(run["run_id"])["tasks"]
        dimension = run["metrics"].get("embedding_dimension")
        if dimension is None:
            embed = next((t for t in tasks if t["task_id"] == "embed"), None)
            dims = (embed or {}).get("params", {}).get("embedding_dimension") or (embed or {}).get(
                "metrics", {}).get("embedding_dimension")
            dimension = dims
        config = {k: run["params"].get(k) for k in CONFIG_PARAMS}
        config["dimension"] = int(float(dimension)) if dimension is not None else None
        for key in ("chunk_size", "chunk_overlap", "batch_size"):
            if config.get(key) is not None and str(config[key]).isdigit():
                config[key] = int(config[key])
        return {"product": product, "version": run["version"], "run": run, "config": config, "tasks": tasks,
                "running": [{k: r[k] for k in ("run_id", "version", "start_time", "mlflow_url")} for r in running],
                "mlflow_url": run["mlflow_url"]}

    # -- analysis (the arithmetic is in ragtrail.trail.analysis) --------------------------------------------
    def trend(self, product: str, metric: str, *, by: str = "version", limit: int = 50,
              version: str | None = None) -> dict:
        """How a metric (or ``status``) moved over versions or over time (see
        :func:`ragtrail.trail.analysis.trend_points`); the newest ``limit`` ended runs are considered.

        Returns:
            ``{"product", "metric", "by", "points", "mlflow_url"}``.
        """
        if by not in ("version", "time"):
            raise ValueError("by must be 'version' or 'time'")
        listing = self.runs(product, version=version, limit=limit)
        oldest_first = [r for r in reversed(listing["runs"]) if r["mlflow_status"] != "RUNNING"]
        return {"product": product, "metric": metric, "by": by,
                "points": trend_points(oldest_first, metric, by), "mlflow_url": listing["mlflow_url"]}

    def best(self, product: str, metric: str, *, mode: str = "max", status: str | None = "FINISHED",
             version: str | None = None) -> dict:
        """The pipeline run with the highest (``mode="max"``) or lowest (``"min"``) value of a metric,
        among FINISHED runs by default. Raises ``LookupError`` when no run logged the metric."""
        if mode not in ("max", "min"):
            raise ValueError("mode must be 'max' or 'min'")
        found = self.runs(product, version=version, status=status, where=f"metrics.`{metric}` >= -1e300",
                          order_by=metric, ascending=mode == "min", limit=1)["runs"]
        if not found:
            raise LookupError(f"no {status or ''} run of {product!r} logged the metric {metric!r}".replace("  ", " "))
        return {"product": product, "metric": metric, "mode": mode, "value": found[0]["metrics"][metric],
                "run": found[0], "mlflow_url": found[0]["mlflow_url"]}

    def compare(self, run_ids: list[str] | None = None, *, product: str | None = None, last: int = 5) -> dict:
        """Put 2+ pipeline runs side by side: params and metrics, which of them differ, and each
        metric's change against the first run (the baseline; see :func:`ragtrail.trail.analysis.side_by_side`).

        Args:
            run_ids: the runs to compare, baseline first.
            product, last: instead of ids, the product's newest ended run against its ``last``
                previous ones (newest first).
        """
        if run_ids:
            runs = [self.run(r) for r in run_ids]
        elif product:
            runs = [r for r in self.runs(product, limit=last + 20)["runs"] if r["mlflow_status"] != "RUNNING"]
            runs = runs[: last + 1]
        else:
            raise ValueError("give run ids, or a product")
        return self.compare_runs(runs)

    def compare_runs(self, runs: list[dict]) -> dict:
        """:meth:`compare` for pipeline runs already fetched (e.g. from :meth:`runs`), baseline first."""
        out = side_by_side(runs)
        out["mlflow_url"] = self.compare_url([r["experiment_id"] for r in runs], [r["run_id"] for r in runs])
        return out

    def summary(self, products: list[str] | None = None) -> dict:
        """Across products: runs, counts by status, success rate, mean pipeline and stage durations
        (see :func:`ragtrail.trail.analysis.product_summary`)."""
        wanted = products or [p["product"] for p in self.products()]
        rows = []
        for name in wanted:
            exp = self.experiment(name)
            runs = [self._pipeline_run(r) for r in self._search(
                [exp.experiment_id], PARENT_RUNS, ["attributes.start_time DESC"], None)]
            stage_durations: dict[str, list[float]] = defaultdict(list)
            for child in self._search([exp.experiment_id], TASK_RUNS, [], None):
                if child.info.end_time and child.info.status == "FINISHED":
                    stage = child.data.tags.get(names.STAGE_TAG) or child.info.run_name
                    stage_durations[stage].append((child.info.end_time - child.info.start_time) / 1000)
            rows.append({"product": name, "experiment_id": exp.experiment_id,
                         **product_summary(runs, stage_durations),
                         "mlflow_url": self.experiment_url(exp.experiment_id)})
        return {"products": rows, "totals": totals(rows), "mlflow_url": names.experiments_url(self.ui_url)}
