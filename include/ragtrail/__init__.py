"""ragtrail: documents in, a searchable Qdrant index out, every run on the record in MLflow.

The domain package: sources, parsing, chunking, embedding, indexing, roll-up and queries. It knows
nothing of Airflow, so a notebook can call any stage directly.
"""

__version__ = "0.1.0"
