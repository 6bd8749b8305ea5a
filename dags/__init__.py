"""Airflow DAGs; an importable package so the DAG files share dags.r2rec_common."""
