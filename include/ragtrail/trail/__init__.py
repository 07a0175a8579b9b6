"""The trail: the one package that speaks MLflow. It imports nothing of Airflow.

- :mod:`~ragtrail.trail.switches`: switches (environment, then ``[ragtrail]`` values handed in);
- :mod:`~ragtrail.trail.guard`: the bounded policy (timeout, retries, budget, lenient/strict);
- :mod:`~ragtrail.trail.client`: the one client factory, experiments per product;
- :mod:`~ragtrail.trail.names`: tag and model names, UI URLs, filter quoting, redaction;
- :mod:`~ragtrail.trail.runs` and :mod:`~ragtrail.trail.task_run`: the writer (parent and child runs,
  keyed by plain ids); :mod:`~ragtrail.trail.track`: ``@track`` for any function;
- :mod:`~ragtrail.trail.queries` (with :mod:`~ragtrail.trail.rows`): the reader;
- :mod:`~ragtrail.trail.registry`: the Model Registry.

``mlflow`` is imported inside functions only: importing the trail is cheap.

Example::

    from ragtrail.trail.queries import Trail
    from ragtrail.trail.track import track
"""
