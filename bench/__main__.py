"""`python -m bench [throughput] [scale] [capacity] [flags]` — `make bench`
(flags through BENCH_ARGS, e.g. `make bench BENCH_ARGS="scale --open 2000"`).

Each benchmark prints its figures with the machine's core count and writes
bench/results/<name>.json. None of them is a test: nothing is compared with a
threshold.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench import capacity, scale, throughput

BENCHMARKS = {"throughput": throughput, "scale": scale, "capacity": capacity}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "which", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(BENCHMARKS)} (all)"
    )
    p.add_argument(
        "--results-dir", type=Path, default=None, help="where the JSON goes (bench/results)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the stacks' data and logs here (default: a temporary directory)",
    )
    for module in BENCHMARKS.values():
        module.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    unknown = [name for name in args.which if name not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
    for name in args.which or list(BENCHMARKS):
        asyncio.run(BENCHMARKS[name].main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
