"""CPython side of the multiproc side-by-side benchmarks.

Usage: python3 bench/python/bench.py <scenario> <iterations>

Runs one scenario `iterations` times after one untimed warm-up operation and prints one JSON
line: {"per_op_s": <seconds per operation>}. The Rust runner (bench/src/main.rs) calls this once
per repetition, interleaved with the Rust side of the same scenario.

To add a scenario, write a function taking the iteration count and returning seconds per
operation, and register it in SCENARIOS under the name the Rust `Scenario` gives as its
python counterpart.
"""

import json
import multiprocessing
import sys
import time


def trivial():
    pass


def start_join(method, iterations):
    ctx = multiprocessing.get_context(method)

    def once():
        p = ctx.Process(target=trivial)
        p.start()
        p.join()

    # Warm-up: starts the fork server, imports the start method's modules.
    once()
    t0 = time.perf_counter()
    for _ in range(iterations):
        once()
    return (time.perf_counter() - t0) / iterations


SCENARIOS = {
    "start_join_fork": lambda n: start_join("fork", n),
    "start_join_spawn": lambda n: start_join("spawn", n),
    "start_join_forkserver": lambda n: start_join("forkserver", n),
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in SCENARIOS:
        sys.exit("usage: bench.py <%s> <iterations>" % "|".join(SCENARIOS))
    iterations = int(sys.argv[2])
    if iterations < 1:
        sys.exit("iterations must be at least 1")
    per_op = SCENARIOS[sys.argv[1]](iterations)
    print(json.dumps({"per_op_s": per_op}), flush=True)


if __name__ == "__main__":
    main()
