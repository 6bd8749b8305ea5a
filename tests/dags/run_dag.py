"""Run one DAG for one logical date with ``dag.test()`` in this (fresh) interpreter and
print its run's task states as JSON, for tests/dags/test_airflow_e2e.py.

    python run_dag.py DAG_ID YYYY-MM-DD '{"param": "value"}'
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

from airflow.dag_processing.dagbag import DagBag

dag_id, ds, conf = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
if bag.import_errors:
    sys.exit(f"import errors: {bag.import_errors}")
dag = bag.get_dag(dag_id)
run = dag.test(logical_date=datetime.fromisoformat(ds).replace(tzinfo=UTC), run_conf=conf)
tasks: dict[str, list[str]] = {}
for ti in sorted(run.get_task_instances(), key=lambda t: (t.task_id, t.map_index)):
    tasks.setdefault(ti.task_id, []).append(str(ti.state))
print(json.dumps({"state": str(run.state), "tasks": tasks}))
