"""The local session is configured the way the benchmarks measured it."""

from __future__ import annotations


def test_local_driver_uses_the_throughput_collector(spark):
    # G1 ran the 5M benchmark out of a 2 GB heap (humongous pages); see r2rec.config.
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    names = {b.getName() for b in beans.getGarbageCollectorMXBeans()}
    assert names == {"PS MarkSweep", "PS Scavenge"}


def test_java_options_can_be_overridden(monkeypatch):
    from r2rec.config import SparkConfig

    monkeypatch.setenv("R2REC_SPARK_DRIVER_JAVA_OPTIONS", "-XX:+UseG1GC")
    assert SparkConfig().driver_java_options == "-XX:+UseG1GC"
    monkeypatch.setenv("R2REC_SPARK_DRIVER_JAVA_OPTIONS", "")
    assert SparkConfig().driver_java_options == ""
