"""Promotion: a trained version becomes the champion scoring uses only if it validates.

``python -m trainer.promote --ds D --candidate <run id | model version | latest-sft |
latest-grpo>`` reads the candidate's validation HR@1 from ``eval_metrics`` of D (run the
evaluation job on it first), compares it with the current champion's, or the untuned
base model's when there is no champion yet, and records the decision.
"""

from __future__ import annotations

import sys

from r2rec import registry
from r2rec.config import parse_ds
from r2rec.errors import R2RecError
from r2rec.jobs import base_parser, run_main
from r2rec.lakehouse import Lakehouse


def run(lake: Lakehouse, ds: str, candidate: str, min_gain: float = 0.0) -> dict:
    ds = parse_ds(ds)
    if candidate.startswith("latest-"):
        row = registry.latest(lake, ds, candidate.removeprefix("latest-"))
        if row is None:
            raise R2RecError(f"no {candidate.removeprefix('latest-')} run registered for ds={ds}")
    else:
        row = registry.lookup(
            lake, candidate if registry.is_reference(candidate) else registry.PREFIX + candidate
        )
    return registry.promote(
        lake, ds, row["model_version"], min_gain=min_gain, baseline_version=row["base_version"]
    )


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m trainer.promote", __doc__.splitlines()[0])
    p.add_argument(
        "--candidate", required=True, help="run id, model version, latest-sft or latest-grpo"
    )
    p.add_argument(
        "--min-gain", type=float, default=0.0, help="required valid HR@1 gain over the champion"
    )
    args = p.parse_args(argv)
    return run_main(lambda: run(Lakehouse(args.lakehouse), args.ds, args.candidate, args.min_gain))


if __name__ == "__main__":
    sys.exit(main())
