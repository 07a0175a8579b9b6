"""The metrics page: per product, the latest run, how it compares with the last five, trends, recent runs.

Rendered on the server as one HTML document with inline SVG plots — no CDN — so it works offline and
in a headless browser. Every figure links to its MLflow run.

Airflow 3 shows the page under Browse in an iframe sandboxed to ``allow-scripts allow-same-origin
allow-forms allow-downloads``: no popups, no top navigation, so a plain ``target`` link does nothing
there. :data:`ESCAPE_FRAME` (the page's only script) re-issues such a click from the Airflow page
around the frame (same origin), which the sandbox does not restrict: MLflow opens in a new tab,
Airflow pages replace the UI. Opened on its own, the links work without it.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from ragtrail.trail.queries import Trail

COLORS = {"FINISHED": "#2e7d32", "PARTIAL": "#ef8f00", "FAILED": "#c62828", "KILLED": "#6d4c41",
          "RUNNING": "#1565c0"}
PLOTS = (("vector_count", "vectors"), ("chunk_count", "chunks"), ("embeddings_per_second", "embeddings / s"),
         ("duration_s", "duration (s)"), ("ndcg_at_10", "nDCG@10"))
HEADLINE = (("docs_parsed", "docs"), ("chunk_count", "chunks"), ("vector_count", "vectors"),
            ("ndcg_at_10", "nDCG@10"), ("recall_at_10", "recall@10"), ("latency_p95_ms", "p95 ms"),
            ("embeddings_per_second", "emb/s"), ("duration_s", "seconds"))
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


def badge(status: str | None) -> str:
    status = status or "UNKNOWN"
    return f'<span class="badge status-{escape(status)}" style="background:{COLORS.get(status, "#555")}">{escape(status)}</span>'


def _link(url: str, text: str, target: str | None = "_blank") -> str:
    """MLflow opens in a new tab; Airflow pages replace the UI around the iframe (``_top``)."""
    return f'<a href="{escape(url)}"{_out(target)}>{escape(text)}</a>'


def _out(target: str | None) -> str:
    """Attributes of a link that leaves the page (see :data:`ESCAPE_FRAME`); none for in-page links."""
    if not target:
        return ""
    return f' target="{target}" data-out="1"' + (' rel="noopener"' if target == "_blank" else "")


def _warnings(run: dict) -> str:
    return "".join(f'<div class="problem warning">warning: {escape(w)}</div>' for w in run.get("warnings") or [])


def _dag_run_link(run: dict) -> str:
    if not run.get("dag_id") or not run.get("airflow_run_id"):
        return ""
    return _link(f"/dags/{quote(run['dag_id'])}/runs/{quote(run['airflow_run_id'], safe='')}", "Airflow run", target="_top")


def line_chart(metric: str, title: str, runs: list[dict], width: int = 380, height: int = 150) -> str:
    """An SVG line plot of a metric over runs (oldest left); dots coloured by status link to MLflow."""
    left, right, top, bottom = 48, 12, 30, 28
    values = [r["metrics"].get(metric) for r in runs]
    known = [v for v in values if v is not None]
    lo, hi = min([0.0, *known]), max([1.0, *known])
    span_x = max(len(runs) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (width - left - right) * (i / span_x if len(runs) > 1 else 0.5)
        y = top + (height - top - bottom) * (1 - (v - lo) / ((hi - lo) or 1))
        return round(x, 1), round(y, 1)

    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    parts = [f'<svg class="trend" data-metric="{escape(metric)}" data-points="{len(pts)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{top + 4}" font-size="10" text-anchor="end">{_fmt(hi)}</text>',
             f'<text x="{left - 4}" y="{height - bottom}" font-size="10" text-anchor="end">{_fmt(lo)}</text>']
    if len(pts) > 1:
        line = " ".join(f"{x},{y}" for x, y in (xy(i, v) for i, v in pts))
        parts.append(f'<polyline fill="none" stroke="#607d8b" stroke-width="1.5" points="{line}"/>')
    for i, v in pts:
        x, y = xy(i, v)
        r = runs[i]
        parts.append(f'<a href="{escape(r["mlflow_url"])}"{_out("_blank")}><circle class="point" cx="{x}" cy="{y}" '
                     f'r="4" fill="{COLORS.get(r["status"], "#555")}"><title>{escape(r["version"] or "")} '
                     f'{escape(r["start_time"] or "")}: {_fmt(v)} ({escape(r["status"])})</title></circle></a>')
    labelled = range(len(runs)) if len(runs) <= 8 else sorted({0, len(runs) - 1})
    for i in labelled:
        x, _ = xy(i, lo)
        parts.append(f'<text x="{x}" y="{height - 10}" font-size="10" text-anchor="middle">'
                     f'{escape(runs[i]["version"] or "")}</text>')
    if not pts:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" font-size="11" text-anchor="middle" '
                     f'fill="#777">no values yet</text>')
    return "".join(parts) + "</svg>"


def status_chart(runs: list[dict], width: int = 380, height: int = 110) -> str:
    """One dot per run (oldest left) on a FINISHED / PARTIAL / FAILED row, linked to MLflow."""
    rows = ["FINISHED", "PARTIAL", "FAILED"]
    left, right, top = 70, 10, 24
    span_x = max(len(runs) - 1, 1)
    parts = [f'<svg class="trend" data-metric="status" data-points="{len(runs)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="status">',
             '<text x="70" y="14" font-size="12" font-weight="bold">status</text>']
    for j, name in enumerate(rows):
        y = top + 8 + j * 24
        parts.append(f'<text x="{left - 6}" y="{y + 4}" font-size="10" text-anchor="end">{name}</text>'
                     f'<line x1="{left}" y1="{y}" x2="{width - right}" y2="{y}" stroke="#eee"/>')
    for i, r in enumerate(runs):
        row = rows.index(r["status"]) if r["status"] in rows else 2
        x = left + (width - left - right) * (i / span_x if len(runs) > 1 else 0.5)
        parts.append(f'<a href="{escape(r["mlflow_url"])}"{_out("_blank")}><circle class="point" cx="{x:.1f}" '
                     f'cy="{top + 8 + row * 24}" r="5" fill="{COLORS.get(r["status"], "#555")}"><title>'
                     f'{escape(r["version"] or "")} {escape(r["start_time"] or "")}: {escape(r["status"])}'
                     f'</title></circle></a>')
    return "".join(parts) + "</svg>"


def _latest_card(t: Trail, latest: dict) -> str:
    run = latest
    tasks = t.tasks(run["run_id"])
    cfg = {k: run["params"].get(k) for k in ("chunk_size", "chunk_overlap", "embedder")}
    cfg["dimension"] = run["metrics"].get("embedding_dimension")
    out = [f'<h3>Latest: {escape(run["version"] or "")} {badge(run["status"])} '
           f'<span class="muted">{escape(run["start_time"] or "")}</span> '
           f'{_link(run["mlflow_url"], "MLflow run")} {_dag_run_link(run)}</h3>',
           '<table class="latest"><tr>' + "".join(f"<th>{label}</th>" for _, label in HEADLINE) + "</tr><tr>"
           + "".join(f'<td class="n">{_fmt(run["metrics"].get(k) if k != "duration_s" else run["duration_s"])}</td>'
                     for k, _ in HEADLINE) + "</tr></table>",
           '<div class="muted">config: ' + ", ".join(f"{k} = {escape(_fmt(v))}" for k, v in cfg.items()) + "</div>"]
    for reason in run["reasons"]:
        out.append(f'<div class="problem">problem: {escape(reason)}</div>')
    out.append(_warnings(run))
    if run["trail"] == "incomplete":
        out.append(f'<div class="problem">trail incomplete — no MLflow run for: '
                   f'{escape(", ".join(run["missing_runs"]) or "runs closed by the roll-up")}</div>')
    out.append('<table class="tasks"><tr><th>task</th><th>status</th><th>try</th><th>seconds</th><th>error</th></tr>')
    for task in tasks["tasks"]:
        out.append(f'<tr><td>{_link(task["mlflow_url"], task["label"])}</td><td>{badge(task["status"])}</td>'
                   f'<td class="n">{task["try_number"]}</td><td class="n">{_fmt(task["duration_s"])}</td>'
                   f'<td>{escape((task["error"] or "")[:120])}</td></tr>')
    return "".join(out) + "</table>"


def _compare_table(t: Trail, runs: list[dict]) -> str:
    cmp = t.compare_runs(runs)
    head = "".join(f'<th>{_link(r["mlflow_url"], (r["version"] or "") + " " + r["run_id"][:6])}</th>'
                   for r in cmp["runs"])
    rows = ["<tr><td>status</td>" + "".join(f"<td>{badge(s)}</td>" for s in cmp["status"]) + "</tr>"]
    for key, _ in HEADLINE[:-1]:
        values = cmp["metrics"].get(key, [None] * len(runs))
        cls = ' class="diff"' if key in cmp["diff"]["metrics"] else ""
        rows.append(f"<tr{cls}><td>{key}</td>" + "".join(f'<td class="n">{_fmt(v)}</td>' for v in values) + "</tr>")
    for key in cmp["diff"]["params"]:
        rows.append(f'<tr class="diff"><td>{escape(key)}</td>'
                    + "".join(f"<td>{escape(_fmt(v))}</td>" for v in cmp["params"][key]) + "</tr>")
    return (f'<h3>Compared with the last {len(runs) - 1} {_link(cmp["mlflow_url"], "(MLflow compare)")}</h3>'
            f'<table class="compare"><tr><th></th>{head}</tr>{"".join(rows)}</table>')


def _product_section(t: Trail, product: dict, limit: int) -> str:
    name = product["product"]
    runs = t.runs(name, limit=limit)["runs"]
    done = [r for r in runs if r["mlflow_status"] != "RUNNING"]
    out = [f'<section class="product" data-product="{escape(name)}"><h2>{escape(name)} '
           f'<span class="muted">{_link(product["mlflow_url"], "MLflow experiment")}</span></h2>']
    if not done:
        return "".join(out) + '<p class="muted">No finished pipeline run yet.</p></section>'
    out.append(_latest_card(t, done[0]))
    if len(done) > 1:
        out.append(_compare_table(t, done[:6]))
    oldest_first = list(reversed(done))
    out.append('<h3>Trends</h3><div class="plots">')
    out += [f'<div class="plot">{line_chart(metric, title, oldest_first)}</div>' for metric, title in PLOTS]
    out.append(f'<div class="plot">{status_chart(oldest_first)}</div></div>')
    out.append('<h3>Recent runs</h3><table class="runs"><tr><th>started (UTC)</th><th>version</th><th>status</th>'
               + "".join(f"<th>{label}</th>" for _, label in HEADLINE) + "<th></th></tr>")
    for r in runs:
        out.append(f'<tr class="run"><td>{escape(r["start_time"] or "")}</td><td>{escape(r["version"] or "")}</td>'
                   f'<td>{badge(r["status"])}{" ⚠ worse than live" if r.get("warnings") else ""}</td>'
                   + "".join(f'<td class="n">{_fmt(r["metrics"].get(k) if k != "duration_s" else r["duration_s"])}</td>'
                             for k, _ in HEADLINE)
                   + f'<td>{_link(r["mlflow_url"], "MLflow")} {_dag_run_link(r)}</td></tr>')
    return "".join(out) + "</table></section>"


def render(t: Trail, product: str | None = None, limit: int = 20) -> str:
    """The whole page, for one product or all of them."""
    products = t.products()
    if product is not None:
        chosen = [p for p in products if p["product"] == product]
        if not chosen:
            raise LookupError(f"product {product!r} has no runs yet")
    else:
        chosen = products
    nav = " ".join(_link(f"?product={quote(p['product'])}", p["product"], target=None) for p in products)
    body = "".join(_product_section(t, p, limit) for p in chosen) or (
        '<p class="muted">No pipeline runs yet: trigger <b>rag_ingest</b> in Airflow.</p>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ragtrail metrics</title>'
            f'<style>{CSS}</style>{ESCAPE_FRAME}</head><body><h1>ragtrail — RAG pipeline metrics</h1>'
            f'<nav>{_link("?", "all products", target=None)} {nav} '
            f'<span class="muted">| {_link(t.ui_url + "/#/experiments", "MLflow UI")}</span></nav>{body}'
            f'</body></html>')


def _document(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{CSS}</style>{ESCAPE_FRAME}</head><body>{body}</body></html>')


def render_dag_run(t: Trail, run: dict | None, problem: str = "") -> str:
    """The DAG run's "MLflow" tab in Airflow: its pipeline run's status, quality and task runs, linked."""
    if run is None:
        return _document("MLflow pipeline run", f'<p class="muted">{escape(problem)}</p>')
    head = (f'<h1>{escape(run.get("name") or run["run_id"])} {badge(run["status"])}</h1>'
            f'<p>{_link(run["mlflow_url"], "Open the pipeline run in MLflow")} · '
            f'{_link(t.experiment_url(run["experiment_id"]), "all runs of " + (run["product"] or "the product"))}</p>')
    table = ('<table class="latest"><tr>' + "".join(f"<th>{label}</th>" for _, label in HEADLINE) + "</tr><tr>"
             + "".join(f'<td class="n">{_fmt(run["metrics"].get(k) if k != "duration_s" else run["duration_s"])}</td>'
                       for k, _ in HEADLINE) + "</tr></table>")
    notes = "".join(f'<div class="problem">problem: {escape(r)}</div>' for r in run["reasons"]) + _warnings(run)
    rows = "".join(f'<tr><td>{_link(task["mlflow_url"], task["label"])}</td><td>{badge(task["status"])}</td>'
                   f'<td class="n">{_fmt(task["duration_s"])}</td></tr>' for task in t.tasks(run["run_id"])["tasks"])
    return _document("MLflow pipeline run", head + table + notes + '<table class="tasks"><tr><th>task run</th>'
                     f'<th>status</th><th>seconds</th></tr>{rows}</table>')
