"""R2Rec shared core: table contracts, Delta I/O, configuration and bundled assets.

Everything in this package is imported by every stage, so it imports no stage and
nothing heavy (Spark, torch, vLLM) at import time; heavy modules are imported inside
the functions that need them.
"""

__version__ = "0.1.0"
