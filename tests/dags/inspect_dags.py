"""Load dags/ in a fresh interpreter (Airflow reads its config at import) and print the
structure of every DAG as JSON, for tests/dags/test_dags.py."""

from __future__ import annotations

import json
import sys
import time

from airflow.dag_processing.dagbag import DagBag

start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - start
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "seconds": seconds}
out["heavy"] = sorted(m for m in ("pyspark", "torch", "vllm", "transformers", "trl", "deltalake")
                      if m in sys.modules)  # fmt: skip
out["dags"] = {}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "schedule": dag.schedule if isinstance(dag.schedule, str) else repr(dag.schedule),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "tags": sorted(dag.tags),
        "doc_md": bool(dag.doc_md),
        "params": {k: dag.params.get_param(k).schema for k in dag.params},
        "param_defaults": {k: dag.params[k] for k in dag.params},
        "tasks": {
            t.task_id: {
                "type": type(t).__name__,
                "upstream": sorted(t.upstream_task_ids),
                "pool": t.pool,
                "pool_slots": t.pool_slots,
                "retries": t.retries,
                "retry_delay_s": t.retry_delay.total_seconds(),
                "timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                "outlets": sorted(getattr(o, "name", str(o)) for o in t.outlets),
                "conn_id": getattr(t, "conn_id", None) or getattr(t, "_conn_id", None),
                "mapped": type(t).__name__ == "MappedOperator",
                "command": getattr(t, "bash_command", None)
                if type(t).__name__ == "BashOperator"
                else None,
                "spark_conf": getattr(t, "conf", None)
                if type(t).__name__ == "SparkSubmitOperator"
                else None,
            }
            for t in dag.tasks
        },
    }
print(json.dumps(out))
