"""The one place a SparkSession is built, so every job, stage and test configures it alike."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from r2rec.config import SparkConfig
from r2rec.errors import R2RecError


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
        if not launched_by_spark_submit():
            # Read only when this process launches the JVM, i.e. local runs.
            options = f"{cfg.driver_java_options} {log_java_options()}".strip()
            builder = builder.config("spark.driver.extraJavaOptions", options)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level())
    global _WATCH
    if _WATCH is None:
        from r2rec.progress import SparkWatch

        _WATCH = SparkWatch(spark).start()
    return spark


_WATCH = None  # one status-tracker thread per process, for the session's lifetime


LOG4J2 = Path(__file__).with_name("log4j2.properties")
_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")


def log_level() -> str:
    """Spark's log level: $R2REC_SPARK_LOG_LEVEL (WARN unless set; INFO for debugging)."""
    level = os.environ.get("R2REC_SPARK_LOG_LEVEL", "WARN").strip().upper() or "WARN"
    if level not in _LEVELS:
        raise R2RecError(
            f"R2REC_SPARK_LOG_LEVEL must be one of {', '.join(_LEVELS)}, got {level!r}"
        )
    return level


def log_java_options() -> str:
    """JVM options that make the driver log at :func:`log_level` from its first line
    (setLogLevel only applies after start-up, which is where most INFO lines come from)."""
    return f"-Dlog4j2.configurationFile=file:{LOG4J2} -Dr2rec.spark.log.level={log_level()}"


def launched_by_spark_submit() -> bool:
    """True inside a job started by ``spark-submit`` (its Python runner opens a gateway)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _submitted_master() -> str:
    from pyspark import SparkConf, SparkContext

    # Connects to the gateway spark-submit opened, so SparkConf sees its --master.
    SparkContext._ensure_initialized()
    return SparkConf().get("spark.master", "local[*]")
