"""Speed of a search (default: the default strategy, population 100, 200 rounds) with a surrogate.

Prints, from one run: the search's total time, the time spent in the predictor's ``predict``
calls, and the search's own overhead as a ratio to the predictor time::

    .venv/bin/python benchmarks/search_speed.py --predictor surrogates/digits [--strategy nsga2]
"""

from __future__ import annotations

import argparse
import time

from lightning_nas.search.core import SearchConfig, run
from lightning_nas.search.outputs import load_predictor
from lightning_nas.search.strategies import STRATEGIES, build_strategy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictor", default="surrogates/digits")
    p.add_argument("--strategy", default="analognas_ea", choices=list(STRATEGIES))
    p.add_argument("--population", type=int, default=100)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--max-params", type=int, default=100_000)
    p.add_argument("--input-shape", type=int, nargs=3, default=[1, 8, 8])
    p.add_argument("--num-classes", type=int, default=10)
    args = p.parse_args()
    predictor = load_predictor(args.predictor)
    cfg = SearchConfig(population=args.population, iterations=args.iterations, max_params=args.max_params)
    start = time.perf_counter()
    result = run(build_strategy(args.strategy), predictor, cfg, args.input_shape, args.num_classes)
    total = time.perf_counter() - start
    overhead = total - result.predict_s
    print(f"search {args.strategy} {args.population} x {args.iterations}: {result.evaluations} evaluations in "
          f"{result.generations + 1} predict calls")
    print(f"total {total:.2f} s, predictor {result.predict_s:.2f} s, search overhead {overhead:.2f} s "
          f"= {overhead / result.predict_s:.2f}x the predictor time")


if __name__ == "__main__":
    main()
