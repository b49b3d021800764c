"""Run every server benchmark in turn and print one summary (``make bench`` can call this).

    .venv/bin/python -m bench.run_all [--quick]

``--quick`` shrinks repetitions and graph sizes (a smoke run of a few minutes); without it the
full set takes roughly 25-30 minutes on the 2-core benchmark machine, most of it generating and
querying the 1M-edge graph. Each benchmark also runs on its own: ``python -m bench.ingest``,
``bench.lineage_query``, ``bench.rss_32mb`` (see bench/README.md). Exit status 0 when all ran,
whether or not targets were met (the verdicts are printed); 1 when a benchmark failed to run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench import common

FULL: list[list[str]] = [
    ["bench.ingest"],
    ["bench.lineage_query"],
    ["bench.rss_32mb"],
]
QUICK: list[list[str]] = [
    ["bench.ingest", "--reps", "1", "--duration", "4", "--worker-class", "gthread"],
    ["bench.lineage_query", "--sizes", "10000,100000", "--rounds", "1", "--per-round", "20"],
    ["bench.rss_32mb", "--variants", "custom"],
]


def main() -> None:
    common.install_signal_handlers()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    failed = []
    outputs = []
    for argv in QUICK if args.quick else FULL:
        common.log(f"=== {' '.join(argv)}")
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=common.REPO, stdout=subprocess.PIPE, text=True)
        try:
            stdout, _ = proc.communicate()
        finally:
            if proc.poll() is None:  # interrupted: let the benchmark clean up after itself
                proc.terminate()
                proc.wait(timeout=120)
        print(stdout, flush=True)
        outputs.append((argv[0], proc.returncode, time.monotonic() - started, stdout))
        if proc.returncode != 0:
            failed.append(argv[0])
    print("=" * 100)
    for name, code, seconds, out in outputs:
        verdicts = [line for line in out.splitlines() if line.startswith("target ")]
        print(f"{name}: exit {code} in {seconds / 60:.1f} min")
        for line in verdicts:
            print(f"  {line}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
