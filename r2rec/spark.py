"""The one place a SparkSession is built, so every job, stage and test configures it alike."""

from __future__ import annotations

import os
import sys

from r2rec.config import SparkConfig


def get_spark(config: SparkConfig | None = None):
    """Return the active session, or build a local one from ``config``.

    On a cluster (spark-submit, Databricks) the session already exists and is reused
    untouched, including its delta-spark configuration if any. Locally we bind to
    loopback, turn the UI off and keep shuffles small: two cores gain nothing from 200
    shuffle partitions.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    cfg = config or SparkConfig()
    # Executors must run the same interpreter as the driver (the project venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.app_name)
    if launched_by_spark_submit():
        # spark-submit already started the JVM with its --master (the Airflow connection's
        # cluster) and driver memory: setting ours here would silently override them.
        master = _submitted_master()
    else:
        master = cfg.master
        builder = builder.master(cfg.master).config("spark.driver.memory", cfg.driver_memory)
    builder = (
        builder.config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
        )
        if cfg.driver_java_options and not launched_by_spark_submit():
            # Read only when this process launches the JVM, i.e. local runs.
            builder = builder.config("spark.driver.extraJavaOptions", cfg.driver_java_options)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("R2REC_SPARK_LOG_LEVEL", "ERROR"))
    return spark


def launched_by_spark_submit() -> bool:
    """True inside a job started by ``spark-submit`` (its Python runner opens a gateway)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _submitted_master() -> str:
    from pyspark import SparkConf, SparkContext

    # Connects to the gateway spark-submit opened, so SparkConf sees its --master.
    SparkContext._ensure_initialized()
    return SparkConf().get("spark.master", "local[*]")
