"""Spark jobs: pure DataFrame transforms plus a thin ``main(argv)`` per job."""
