"""How long the listing commands take to start, next to what importing torch alone costs (issue N).

Usage: ``python benchmarks/startup.py [--runs 5] > benchmarks/results/startup.txt``

Each command runs in a fresh interpreter; the figure is the median wall time over ``--runs``, measured
side by side with ``python -c "import torch"`` in the same run, so a loaded machine shows in both.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = [["--help"], ["plugins"], ["divergences"], ["train", "--help"]]


def wall(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    exe = shutil.which("bregzoo") or sys.exit("bregzoo is not on PATH: run from the project's venv")
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# bregzoo start-up, median of {args.runs} fresh processes; {platform.machine()}, "
          f"{os.cpu_count()} cores, python {platform.python_version()}, git {rev}, "
          f"load avg {os.getloadavg()[0]:.2f} at start")
    print(f"# command: python benchmarks/startup.py --runs {args.runs}")
    torch_s = wall([sys.executable, "-c", "import torch"], args.runs)
    label = 'python -c "import torch"'
    print(f"  {label:28s} {torch_s:6.2f} s   (the cost the listing commands avoid)")
    for cmd in COMMANDS:
        s = wall([exe, *cmd], args.runs)
        print(f"  {'bregzoo ' + ' '.join(cmd):28s} {s:6.2f} s   ({s / torch_s:.2f}x importing torch)")


if __name__ == "__main__":
    main()
