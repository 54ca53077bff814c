"""`python -m bench [throughput] [scale] [capacity] [flags]` (`make bench`)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench import capacity, scale, throughput

BENCHMARKS = {"throughput": throughput, "scale": scale, "capacity": capacity}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("which", nargs="*", choices=[*BENCHMARKS, []], help="default: all")
    p.add_argument("--results-dir", type=Path, default=None)
    p.add_argument("--data-dir", type=Path, default=None)
    for module in BENCHMARKS.values():
        module.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in args.which or list(BENCHMARKS):
        asyncio.run(BENCHMARKS[name].main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
