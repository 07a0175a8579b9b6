"""ragtrail: documents in, a searchable Qdrant index out, every run on the record in MLflow.

Rooms (docs/architecture.md): ``core`` (the basics), ``trail`` (the only MLflow speaker) — with
``ragtrail_airflow`` the tracking provider — and the RAG kit (``pip install "ragtrail[rag]"``):
``sources``, ``stages``, ``store``, ``models`` and the shell, ``cli``. Nothing here knows Airflow, so a
notebook can call any stage directly.
"""

__version__ = "0.1.0"
