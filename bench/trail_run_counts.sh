#!/bin/bash
# How many MLflow runs one rag_ingest DAG run leaves, at 300 and 3,000 one-line documents (issue 28 item 4).
# usage: bench/trail_run_counts.sh <venv bin folder> <label>; appends JSON lines to /tmp/trailbench/results.jsonl
mkdir -p /tmp/trailbench
VBIN=$1; LABEL=$2
for n in 300 3000; do
  home=/tmp/trailbench/$LABEL-$n; rm -rf $home; mkdir -p $home/corpus
  python3 -c "
import sys
for i in range($n): open(f'$home/corpus/d{i}.txt','w').write(f'one line document number {i}')"
  cd /tmp && RAGTRAIL_HOME=$home $VBIN/ragtrail ingest --source $home/corpus --product size$n --json > $home/summary.json 2> $home/stderr.txt
  echo "rc=$?" >> $home/stderr.txt
  RAGTRAIL_HOME=$home $VBIN/python -c "
import json
from mlflow import MlflowClient
s=json.load(open('$home/summary.json'))
c=MlflowClient('sqlite:///$home/mlflow/mlflow.db')
from mlflow.entities import ViewType
kids=c.search_runs([s['experiment_id']], \"tags.\`mlflow.parentRunId\` = '%s'\" % s['parent_run_id'], run_view_type=ViewType.ALL)
allruns=c.search_runs([s['experiment_id']], '', run_view_type=ViewType.ALL, max_results=5000)
print(json.dumps({'label':'$LABEL','docs':$n,'status':s['status'],'child_runs':len(kids),'runs_in_experiment':len(allruns),'names':sorted(r.info.run_name for r in kids)}))
" >> /tmp/trailbench/results.jsonl
done
