"""The metrics page: per product, the latest run, how it compares with the last five, trends, recent runs.

Rendered on the server from autoescaped Jinja2 templates (``templates/``) into one HTML document with
inline SVG plots — no CDN, no script to draw them — so it works offline and in a headless browser.
Every figure links to its MLflow run. Python computes the plots' geometry; the templates write markup.

Airflow 3 shows the page under Browse in an iframe sandboxed to ``allow-scripts allow-same-origin
allow-forms allow-downloads``: no popups, no top navigation, so a plain ``target`` link does nothing
there. :data:`ESCAPE_FRAME` (the page's only script) re-issues such a click from the Airflow page
around the frame (same origin), which the sandbox does not restrict: MLflow opens in a new tab,
Airflow pages replace the UI. Opened on its own, the links work without it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from ragtrail.trail import names as n
from ragtrail.trail.names import experiments_url
from ragtrail.trail.queries import Trail

COLORS = {"FINISHED": "#2e7d32", "PARTIAL": "#ef8f00", "FAILED": "#c62828", "KILLED": "#6d4c41",
          "RUNNING": "#1565c0"}
PLOTS = ((n.VECTOR_COUNT, "vectors"), (n.CHUNK_COUNT, "chunks"), (n.EMBEDDINGS_PER_SECOND, "embeddings / s"),
         (n.DURATION_S, "duration (s)"), (n.NDCG_AT_10, "nDCG@10"))
HEADLINE = ((n.DOCS_PARSED, "docs"), (n.CHUNK_COUNT, "chunks"), (n.VECTOR_COUNT, "vectors"),
            (n.NDCG_AT_10, "nDCG@10"), (n.RECALL_AT_10, "recall@10"), (n.LATENCY_P95_MS, "p95 ms"),
            # the evaluation's comparison of retrieval modes (nDCG@10 of each; "–" for a dense-only version)
            *((n.mode_metric(n.NDCG_AT_10, mode), f"nDCG {mode}") for mode in ("dense", "sparse", "hybrid")),
            (n.EMBEDDINGS_PER_SECOND, "emb/s"), (n.DURATION_S, "seconds"))  # seconds last: the compare table drops it
ESCAPE_FRAME = """<script>
// Inside Airflow's sandboxed iframe a link cannot open a tab or leave the frame; the same-origin
// parent page can: click a copy of the link there.
if (window.top !== window) document.addEventListener("click", function (ev) {
  var a = ev.target.closest && ev.target.closest("a[data-out]");
  if (!a) return;
  try {
    var doc = window.top.document, copy = doc.createElement("a");
    // getAttribute: an SVG link's href and target are not plain strings
    copy.href = new URL(a.getAttribute("href"), location.href).href;
    copy.target = a.getAttribute("target") || "_top"; copy.rel = "noopener";
    doc.body.appendChild(copy); copy.click(); copy.remove();
    ev.preventDefault();
  } catch (err) { /* another origin: leave the click alone */ }
});
</script>"""
CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 8px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:14px 0 6px}nav a{margin-right:10px}
table{border-collapse:collapse;margin:4px 0 10px}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.badge{color:#fff;padding:1px 7px;border-radius:9px;font-size:12px}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #eee;padding:4px}.muted{color:#777}
.diff{background:#fff6d6}.warning{color:#8a5a00;font-weight:600}
"""


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.3g}"
    return str(value)


@lru_cache(maxsize=1)
def _env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined
    from markupsafe import Markup

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["urlpart"] = lambda text: quote(str(text), safe="")
    env.globals.update(colors=COLORS, headline=HEADLINE, css=Markup(CSS), escape_frame=Markup(ESCAPE_FRAME))
    return env


def _x(i: int, n: int, left: float, right: float) -> float:
    return round(left + (right - left) * (i / max(n - 1, 1) if n > 1 else 0.5), 1)


def line_chart(metric: str, title: str, runs: list[dict], width: int = 380, height: int = 150) -> dict:
    """The geometry of a line plot of ``metric`` over ``runs`` (oldest first), for ``macros.line_chart``."""
    left, right, top, base = 48, width - 12, 30, height - 28
    values = [r["metrics"].get(metric) for r in runs]
    known = [v for v in values if v is not None]
    lo, hi = min([0.0, *known]), max([1.0, *known])

    def y(v: float) -> float:
        return round(top + (base - top) * (1 - (v - lo) / ((hi - lo) or 1)), 1)

    points = [{"x": _x(i, len(runs), left, right), "y": y(v), "value": v, "run": runs[i]}
              for i, v in enumerate(values) if v is not None]
    labelled = range(len(runs)) if len(runs) <= 8 else sorted({0, len(runs) - 1})
    return {"metric": metric, "title": title, "width": width, "height": height, "left": left, "right": right,
            "top": top, "base": base, "lo": lo, "hi": hi, "points": points,
            "polyline": " ".join(f"{p['x']},{p['y']}" for p in points) if len(points) > 1 else "",
            "labels": [(_x(i, len(runs), left, right), runs[i]["version"] or "") for i in labelled]}


def status_chart(runs: list[dict], width: int = 380, height: int = 110) -> dict:
    """The geometry of the status plot: one dot per run on a FINISHED / PARTIAL / FAILED row."""
    names = ["FINISHED", "PARTIAL", "FAILED"]
    left, right, top = 70, width - 10, 24
    rows = [(name, top + 8 + j * 24) for j, name in enumerate(names)]
    points = [{"x": _x(i, len(runs), left, right), "y": rows[names.index(r["status"]) if r["status"] in names else 2][1],
               "run": r} for i, r in enumerate(runs)]
    return {"width": width, "height": height, "left": left, "right": right, "rows": rows, "points": points}


def _canary_chart(t: Trail, product: str) -> list[dict]:
    """The live index's nDCG@10 as the canary measured it over time (none without canary runs)."""
    from ragtrail.trail.canary_runs import canary_trend

    client = getattr(t, "client", None)
    runs = canary_trend(client, product, t.ui_url) if client is not None else []
    return [line_chart(n.NDCG_AT_10, "live nDCG@10 (canary)", runs)] if runs else []


def _section(t: Trail, product: dict, limit: int) -> dict:
    name = product["product"]
    runs = t.runs(name, limit=limit)["runs"]
    done = [r for r in runs if r["mlflow_status"] != "RUNNING"]
    section = {"name": name, "mlflow_url": product["mlflow_url"], "latest": None}
    if not done:
        return section
    latest = done[0]
    oldest_first = list(reversed(done))
    config = {k: latest["params"].get(k) for k in ("chunk_size", "chunk_overlap", "embedder")}
    config["dimension"] = latest["metrics"].get("embedding_dimension")
    section.update(latest=latest, config=config, tasks=t.tasks(latest["run_id"])["tasks"], runs=runs,
                   compare=t.compare_runs(done[:6]) if len(done) > 1 else None,
                   charts=[line_chart(metric, title, oldest_first) for metric, title in PLOTS] + _canary_chart(t, name),
                   status_chart=status_chart(oldest_first))
    return section


def render(t: Trail, product: str | None = None, limit: int = 20) -> str:
    """The whole page, for one product or all of them."""
    products = t.products()
    if product is not None:
        chosen = [p for p in products if p["product"] == product]
        if not chosen:
            raise LookupError(f"product {product!r} has no runs yet")
    else:
        chosen = products
    return _env().get_template("metrics.html.j2").render(
        title="ragtrail metrics", products=products, experiments_url=experiments_url(t.ui_url),
        sections=[_section(t, p, limit) for p in chosen])


def render_dag_run(t: Trail, run: dict | None, problem: str = "") -> str:
    """The DAG run's "MLflow" tab in Airflow: its pipeline run's status, quality and task runs, linked."""
    return _env().get_template("dag_run.html.j2").render(
        title="MLflow pipeline run", run=run, problem=problem,
        experiment_url=t.experiment_url(run["experiment_id"]) if run else "",
        tasks=t.tasks(run["run_id"])["tasks"] if run else [])
