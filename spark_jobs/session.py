"""The SparkSession of the Spark jobs: the core's one builder (r2rec.spark), re-exported.

The evaluation job (ALS) needs a session too; a stage may not import another stage, so
the builder lives in the core and every caller shares it.
"""

from r2rec.spark import get_spark, launched_by_spark_submit

__all__ = ["get_spark", "launched_by_spark_submit"]
