"""Promotion: a trained version becomes the champion scoring uses only if it validates.

``python -m trainer.promote --ds D --candidate <run id | model version | latest-sft |
latest-grpo>`` reads the candidate's validation results from ``eval_metrics`` and
``eval_outcomes`` of D (run the evaluation job on it first), pairs them sample by sample
with the current champion's on D, or with the untuned base model's when there is no
champion yet (evaluate either first: ``evaluate --incumbent-of <candidate>``), promotes
only on a gain a one-sided sign test at ``--alpha`` supports, and records the decision.
References resolve through ``r2rec.registry`` (``latest-sft`` is the newest SFT run of D).
"""

from __future__ import annotations

import sys

from r2rec import registry
from r2rec.config import parse_ds
from r2rec.jobs import base_parser, run_main
from r2rec.lakehouse import Lakehouse


def run(
    lake: Lakehouse,
    ds: str,
    candidate: str,
    min_gain: float = 0.0,
    min_samples: int = registry.MIN_SAMPLES,
    alpha: float = registry.ALPHA,
) -> dict:
    ds = parse_ds(ds)
    row = registry.lookup(lake, candidate, ds)
    return registry.promote(
        lake,
        ds,
        f"{registry.PREFIX}{row['model_version']}",
        min_gain=min_gain,
        baseline_version=row["base_version"],
        min_samples=min_samples,
        alpha=alpha,
    )


def main(argv: list[str] | None = None) -> int:
    p = base_parser("python -m trainer.promote", __doc__.splitlines()[0])
    p.add_argument(
        "--candidate", required=True, help="run id, model version, latest-sft or latest-grpo"
    )
    p.add_argument(
        "--min-gain", type=float, default=0.0, help="valid HR@1 the candidate must gain (> it)"
    )
    p.add_argument(
        "--min-samples", type=int, default=registry.MIN_SAMPLES,
        help="validation samples below which no model is promoted",
    )  # fmt: skip
    p.add_argument(
        "--alpha", type=float, default=registry.ALPHA,
        help="largest one-sided sign-test p-value that promotes (1 = the gain alone decides)",
    )  # fmt: skip
    args = p.parse_args(argv)
    return run_main(
        lambda: run(
            Lakehouse(args.lakehouse),
            args.ds,
            args.candidate,
            args.min_gain,
            args.min_samples,
            args.alpha,
        ),
        job="promote",
        argv=argv,
        ds=args.ds,
        lakehouse=args.lakehouse,
    )


if __name__ == "__main__":
    sys.exit(main())
