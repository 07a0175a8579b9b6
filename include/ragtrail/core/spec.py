"""The run spec: one table of every run parameter, and everything derived from it.

Each :class:`Field` row says a parameter's name, type, default, bounds, description, trigger-form
section, whether it defines a version (a collection's identity), its ``ragtrail ingest`` flag and
where it sits in ``products.yml``. From these rows come the trigger form's schemas
(:func:`form_schemas`, wrapped in Airflow ``Param`` objects by ``ragtrail_airflow.rag.pipeline``), the CLI
flags (``ragtrail.cli.flags``), the products file's validation (:func:`Field.check`), the version
config (:meth:`RunConfig.version_config`), the parent run's params (:data:`RUN_PARAMS`) and
``rag_tune``'s params (:data:`TUNE_FIELDS`). Stage code takes the typed :class:`RunConfig`; the raw
params dict stops at the Airflow edge (:func:`run_config`).

Example::

    cfg = run_config({"source": "docs/", "product": "handbook", "chunk_size": 128})
    cfg.chunk_size, cfg.version_config()  # 128, {"chunk_size": 128, ...}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from ragtrail.core.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_EMBED_BACKEND,
    DEFAULT_EMBEDDER,
    DEFAULT_FUSION,
    DEFAULT_RETRIEVAL_MODE,
    DEFAULT_SPARSE_WEIGHT,
    SAMPLE_CORPUS,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"
# Titled groups of the trigger form: Airflow 3 opens the untitled group (the run's essentials) and
# shows each titled one collapsed; a titled group turns red when a value in it is invalid.
SOURCE_ACCESS, CHUNKING, SYNC, GATE, TABLES = (
    "Source access", "Chunking & embedding", "Sync & batching", "Evaluation gate", "Tables")
SEARCH = "Search space"
RETRIEVAL = "Retrieval"
_JSON_TYPE = {str: "string", int: "integer", float: "number", bool: "boolean"}
_WORDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
PATTERN_WORDS = {NAME_PATTERN: "a name of 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"}  # in words


@dataclass(frozen=True)
class Field:
    """One run parameter. ``optional``: ``None`` (an empty form field) is allowed and means "unset"."""

    name: str
    type: type
    default: Any
    title: str
    description: str
    section: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    enum: tuple | None = None
    pattern: str | None = None
    min_length: int | None = None
    optional: bool = False
    defines_version: bool = False
    logged: bool = True  # a param of the MLflow parent run
    cli: str | None = ""  # "" = --<name with dashes>; None = no flag
    cli_help: str | None = None  # the flag's help where the description would mislead (a negated flag)
    products: str | None = None  # dotted path in a products.yml entry; None = not settable there

    @property
    def flag(self) -> str | None:
        return None if self.cli is None else self.cli or "--" + self.name.replace("_", "-")

    def bounds(self) -> str:
        """The rule a value must follow, in words (the same in every message)."""
        if self.enum:
            return "one of " + ", ".join(map(str, self.enum))
        if self.pattern:
            return PATTERN_WORDS.get(self.pattern, f"text matching {self.pattern}")
        word = _WORDS[self.type]
        if self.minimum is not None and self.maximum is not None:
            return f"{word} from {_num(self.minimum)} to {_num(self.maximum)}"
        if self.minimum is not None:
            return f"{word} of at least {_num(self.minimum)}"
        if self.exclusive_minimum is not None:
            return f"{word} above {_num(self.exclusive_minimum)}"
        if self.min_length:
            return f"non-empty {word}"
        return word

    def form_description(self) -> str:  # shown under the trigger-form field
        return f"{self.description} Accepted: {self.bounds()}" + (" or empty." if self.optional else ".")

    def check(self, value: Any) -> Any:
        """``value`` if it follows this row's type and bounds, else :class:`ValueError` ("<name> must be …")."""
        if value is None and self.optional:
            return None
        ok_type = (isinstance(value, (int, float)) and not isinstance(value, bool) if self.type is float
                   else isinstance(value, self.type) and (self.type is bool or not isinstance(value, bool)))
        ok = ok_type and not (
            (self.enum and value not in self.enum)
            or (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
            or (self.exclusive_minimum is not None and value <= self.exclusive_minimum)
            or (self.min_length and len(value) < self.min_length)
            or (self.pattern and not re.match(self.pattern, value)))
        if not ok:
            raise ValueError(f"{self.name} must be {self.bounds()} (got {value!r})")
        return float(value) if self.type is float else value

    def schema(self) -> dict[str, Any]:
        """This row as JSON-schema keywords. Numeric bounds sit in ``allOf``: Airflow's number field clamps a
        typed value into a top-level ``minimum``/``maximum`` on blur (-5 became 16); the API server still
        checks ``allOf`` (see docs/ui.md)."""
        json_type = _JSON_TYPE[self.type]
        out: dict[str, Any] = {"type": ["null", json_type] if self.optional else json_type}
        for key, value in (("pattern", self.pattern), ("minLength", self.min_length)):
            if value is not None:
                out[key] = value
        bounds = {k: v for k, v in (("minimum", self.minimum), ("maximum", self.maximum),
                                    ("exclusiveMinimum", self.exclusive_minimum)) if v is not None}
        if bounds:
            out["allOf"] = [bounds]
        if self.enum:
            out["enum"] = list(self.enum)
        return out


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


F = Field
FIELDS: tuple[Field, ...] = (
    F("source", str, str(SAMPLE_CORPUS), "Source", "Where the documents are: a folder, a file:// URI or "
      "s3://bucket/prefix.",
      min_length=1, products="source"),
    F("product", str, "handbook", "Product", "Index name: the Qdrant alias and the MLflow experiment.",
      pattern=NAME_PATTERN),
    F("version", str, "v1", "Version", "Name of this build configuration; each version has its own collection.",
      pattern=NAME_PATTERN, products="version"),
    F("aws_conn_id", str, "aws_default", "AWS connection", "Airflow connection that reads s3:// sources (an "
      "S3-compatible store: endpoint_url in its extra); empty: aws_default.", SOURCE_ACCESS, optional=True),
    F("max_file_mb", float, 50.0, "Max file size (MB)", "Largest file read, in MB; larger ones are quarantined unread (too_large).",
      SOURCE_ACCESS, exclusive_minimum=0),
    F("chunk_size", int, DEFAULT_CHUNK_SIZE, "Chunk size", "Max tokens per chunk (embedder tokens; at most its "
      "window).", CHUNKING, minimum=16, maximum=510, defines_version=True, products="chunking.chunk_size"),
    F("chunk_overlap", int, DEFAULT_CHUNK_OVERLAP, "Chunk overlap", "Tokens shared by consecutive chunks.",
      CHUNKING, minimum=0, maximum=256, defines_version=True, products="chunking.chunk_overlap"),
    F("embedder", str, DEFAULT_EMBEDDER, "Embedder", "sentence-transformers model name or local folder.",
      CHUNKING, min_length=1, defines_version=True, products="embedder.name"),
    F("embed_backend", str, DEFAULT_EMBED_BACKEND, "Embed backend", "torch: fp32 sentence-transformers (CPU/GPU); "
      "onnx-fp32 / onnx-int8: optimised ONNX Runtime on CPU, fp32 or int8 (see docs/performance.md).", CHUNKING,
      enum=("torch", "onnx-fp32", "onnx-int8"), defines_version=True, products="embedder.backend"),
    F("retrieval_mode", str, DEFAULT_RETRIEVAL_MODE, "Retrieval mode", "How the version answers: dense (the "
      "embedding), sparse (BM25 keywords) or hybrid (both, fused). Every version stores BM25 vectors too.",
      RETRIEVAL, enum=("dense", "sparse", "hybrid"), defines_version=True, products="retrieval.mode"),
    F("fusion", str, DEFAULT_FUSION, "Fusion", "How hybrid mode merges the dense and BM25 candidates: rrf "
      "(reciprocal rank) or dbsf (distribution-based score fusion).", RETRIEVAL, enum=("rrf", "dbsf"),
      defines_version=True, products="retrieval.fusion"),
    F("sparse_weight", float, DEFAULT_SPARSE_WEIGHT, "Sparse weight", "Hybrid mode: the BM25 side's share of the "
      "fused score (the dense side's: 1 minus it); 0.5 weighs both alike, as Qdrant's own fusion does.",
      RETRIEVAL, minimum=0, maximum=1, defines_version=True, products="retrieval.sparse_weight"),
    F("batch_size", int, DEFAULT_BATCH_SIZE, "Encode batch size", "Texts the embedder encodes per call.", CHUNKING,
      minimum=1, maximum=1024, products="embedder.batch_size"),
    F("sync_mode", str, "full", "Sync mode", "full: documents gone from the source leave the index; "
      "incremental: they stay.", SYNC, enum=("full", "incremental"), logged=False),
    F("docs_per_shard", int, 10_000, "Objects per ingest shard", "One mapped ingest task per this many source "
      "objects (a range of keys); more shards than Airflow's max_map_length grow instead.", SYNC, minimum=1,
      logged=False),
    F("docs_per_batch", int, 500, "Documents per chunk task", "One mapped chunk task per this many documents.",
      SYNC, minimum=1, logged=False),
    F("texts_per_batch", int, 2048, "Texts per embed task", "One mapped embed task per this many distinct "
      "texts.", SYNC, minimum=1, logged=False),
    F("keep_versions", int, 2, "Old versions kept", "Versions kept besides the live one; older ones are "
      "deleted.", SYNC, minimum=0, logged=False),
    F("promote", bool, True, "Promote", "Point the product alias at this version when it passes the gate.",
      GATE, cli="--no-promote", cli_help="Leave the product alias where it is, even when this version passes "
      "the gate (without the flag, a version that passes goes live)."),
    F("eval_queries", str, None, "Query set", "JSON lines file {id, text, relevant}; empty: none (the sample "
      "corpus brings its own).", GATE, optional=True, products="evaluation.queries"),
    F("min_ndcg", float, 0.0, "Min nDCG@10", "Lowest nDCG@10 that may go live.", GATE, minimum=0, maximum=1),
    F("eval_tolerance", float, 0.02, "Tolerance vs live", "How much lower than the live version's nDCG@10 is "
      "still accepted (a significant drop is rejected anyway).", GATE, minimum=0, maximum=1),
    F("approval", str, "off", "Human approval", "off: the gate decides alone; held: a build the gate held back "
      "waits for a person to approve it; always: every build waits for approval before going live.", GATE,
      enum=("off", "held", "always"), products="approval.mode"),
    F("approval_timeout_h", float, 24.0, "Approval timeout (h)", "Hours to wait for a decision; then the build "
      "is rejected (it stays @candidate).", GATE, minimum=0.001, maximum=24 * 30, products="approval.timeout_hours"),
    F("id_column", str, None, "Id column", "Row id column; empty: id, then doc_id, then row numbers.", TABLES,
      optional=True),
    F("text_column", str, "text", "Text column", "The column holding the text to index.", TABLES, min_length=1),
    F("metadata_columns", str, "*", "Metadata columns", "Comma-separated columns copied into the payload; "
      "* = all others; empty = none.", TABLES, optional=True),
)
BY_NAME = {f.name: f for f in FIELDS}
RUN_PARAMS = tuple(f.name for f in FIELDS if f.logged)
VERSION_FIELDS = tuple(f.name for f in FIELDS if f.defines_version)

# rag_tune: the run's own source rows, and a search space whose chunk-size bounds are the run's.
_CHUNK = BY_NAME["chunk_size"]
TUNE_FIELDS: tuple[Field, ...] = (
    BY_NAME["source"],
    F("product", str, "handbook", "Product", "MLflow experiment; rag_ingest's product when building.",
      pattern=NAME_PATTERN),
    F("eval_queries", str, None, "Query set", "JSON lines file {id, text, relevant}; empty: the sample "
      "corpus's own (other sources need one).", optional=True),
    F("build_best", bool, False, "Build the best", "Trigger rag_ingest with the best configuration as "
      "`version`."),
    F("version", str, "tuned", "Version to build", "Version name for building the best configuration.",
      pattern=NAME_PATTERN),
    BY_NAME["aws_conn_id"],
    F("embedders", str, DEFAULT_EMBEDDER, "Embedders", "Comma-separated embedders to try (local models only).",
      SEARCH, min_length=1),
    F("min_chunk_size", int, 64, "Smallest chunk size", "Tokens.", SEARCH, minimum=_CHUNK.minimum,
      maximum=_CHUNK.maximum),
    F("max_chunk_size", int, 254, "Largest chunk size", "Tokens, at most the embedder's window.", SEARCH,
      minimum=_CHUNK.minimum, maximum=_CHUNK.maximum),
    F("n_trials", int, 12, "Trials", "Trials at most (the space holds ~50 configurations).", SEARCH,
      minimum=1, maximum=500),
    F("timeout_s", float, 1800.0, "Time limit (s)", "Seconds at most for the study (a running trial "
      "finishes).", SEARCH, exclusive_minimum=0),
    F("seed", int, 0, "Seed", "TPE sampler seed.", SEARCH),
)


def _config_class(name: str, rows: tuple[Field, ...], doc: str):
    cls = make_dataclass(name, [(r.name, r.type | None if r.optional else r.type, field(default=r.default))
                                for r in rows], frozen=True)
    cls.__doc__ = doc
    cls.__module__ = __name__
    return cls


RunConfig = _config_class("RunConfig", FIELDS, "One ingest run's parameters, typed and checked (one per spec row).")
RunConfig.version_config = lambda self: {n: getattr(self, n) for n in VERSION_FIELDS}
RunConfig.version_config.__doc__ = "What makes a version: everything that changes the vectors or their chunks."
TuneConfig = _config_class("TuneConfig", TUNE_FIELDS, "One tuning run's parameters (rag_tune).")


def _build(cls, rows: tuple[Field, ...], values: dict[str, Any]):
    """Check every known value against its row; missing ones take the row's default."""
    known = {r.name: r for r in rows}
    return cls(**{n: known[n].check(v) for n, v in values.items() if n in known})


def run_config(params: dict[str, Any]) -> RunConfig:
    """The typed config of a DAG run's params (the Airflow edge calls this); unknown keys are ignored.

    Raises:
        ValueError: naming the parameter and its bounds.
    """
    return _build(RunConfig, FIELDS, params)


def tune_config(params: dict[str, Any]) -> TuneConfig:
    """The typed config of a ``rag_tune`` run's params."""
    return _build(TuneConfig, TUNE_FIELDS, params)


def conf_errors(conf: dict[str, Any], rows: tuple[Field, ...] = FIELDS) -> dict[str, str]:
    """Every problem of a run conf, by param, in plain words (the CLI, the REST API and the products file say
    the same): ``{"chunk_size": "chunk_size must be a whole number from 16 to 510 (got -5)"}``; empty if fine."""
    known, errors = {r.name: r for r in rows}, {}
    for name, value in conf.items():
        try:
            if name not in known:
                raise ValueError(f"{name} is not a run parameter (known: {', '.join(known)})")
            known[name].check(value)
        except ValueError as err:
            errors[name] = str(err)
    return errors


def form_schemas(rows: tuple[Field, ...] = FIELDS, **defaults: Any) -> dict[str, dict[str, Any]]:
    """Per row: ``{"default", "title", "description", "section"?, **schema}`` for an Airflow ``Param``.

    ``defaults`` override the rows' defaults (a product's own DAG shows its configuration).
    """
    out = {}
    for r in rows:
        kw: dict[str, Any] = {"default": defaults.get(r.name, r.default), "title": r.title,
                              "description": r.form_description(), **r.schema()}
        if r.section:
            kw["section"] = r.section
        out[r.name] = kw
    return out
