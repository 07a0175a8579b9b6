# The image every Airflow container of docker-compose.yml runs: Airflow's own image plus ragtrail's pins.
# Versions here must equal requirements.txt (tests/test_compose.py checks it).
FROM apache/airflow:3.3.2-python3.11

USER root
# The project's home, owned by the airflow user so `pip install -e` can write its metadata there.
RUN mkdir -p /opt/ragtrail && chown airflow:0 /opt/ragtrail
USER airflow
# Every package at the version of requirements.lock (the one `make install` and CI use).
COPY --chown=airflow:0 requirements.txt requirements.lock /opt/ragtrail/
# torch first and alone, from the CPU index: anything else would pull the CUDA build (gigabytes).
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# Naming the image's own Airflow makes pip fail, not replace it, should requirements.txt disagree.
RUN pip install --no-cache-dir -c /opt/ragtrail/requirements.lock \
    "apache-airflow==${AIRFLOW_VERSION}" -r /opt/ragtrail/requirements.txt
# The project itself, editable: the entry points (plugin, @task.tracked) are registered and
# dags/, plugins/, include/ mounted over /opt/ragtrail by compose are what every container imports.
COPY --chown=airflow:0 pyproject.toml /opt/ragtrail/pyproject.toml
COPY --chown=airflow:0 dags /opt/ragtrail/dags
COPY --chown=airflow:0 include /opt/ragtrail/include
COPY --chown=airflow:0 plugins /opt/ragtrail/plugins
RUN pip install --no-cache-dir --no-deps -e /opt/ragtrail

ENV HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false
