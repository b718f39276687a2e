"""What importing the producer SDK costs serving code: wall time of a fresh interpreter, against its floors.

Each row starts ``python -c "<import>"`` in a new process (the script's own
``PYTHONPATH`` and working directory, so it measures this checkout), ``--repeat``
times, interleaved, and keeps the best (the machines are shared and noisy, so
read the ratios):

- ``pass``: the interpreter alone;
- ``import msgspec`` and ``import kafka``: the SDK's two dependencies; kafka-python
  is the floor any producer built on it pays;
- ``from monitor.producer import EventProducer``: the SDK;
- ``import monitor.config``: the daemon's configuration stack (pydantic, the
  detectors registry, scikit-learn, scipy, pandas) that the SDK used to load.

Run: ``python bench/producer_import.py [--repeat 15]``; ``python -X importtime -c
'import monitor.producer'`` shows where the time goes module by module.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time

ROWS = {
    "pass (the interpreter alone)": "pass",
    "import msgspec": "import msgspec",
    "import kafka (kafka-python)": "import kafka",
    "from monitor.producer import EventProducer": "from monitor.producer import EventProducer",
    "import monitor.config (the daemon's config stack)": "import monitor.config",
}
BASELINE = "import kafka (kafka-python)"
SDK = "from monitor.producer import EventProducer"


def best_seconds(repeat: int) -> dict[str, float]:
    seconds = dict.fromkeys(ROWS, math.inf)
    for _ in range(repeat):  # interleave so that a noisy neighbour hurts all alike
        for name, code in ROWS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    arguments = parser.parse_args()
    seconds = best_seconds(arguments.repeat)
    interpreter, baseline = seconds["pass (the interpreter alone)"], seconds[BASELINE]
    print(f"fresh interpreter per run, best of {arguments.repeat}, {sys.version.split()[0]}\n")
    print("| import | ms | ms over the interpreter | vs import kafka |")
    print("| --- | ---: | ---: | ---: |")
    for name, value in seconds.items():
        print(f"| {name} | {value * 1000:.0f} | {(value - interpreter) * 1000:.0f} | {value / baseline:.2f} |")
    added = seconds[SDK] - baseline
    print(f"\nthe SDK adds {added * 1000:.0f} ms to kafka-python's import ({seconds[SDK] / baseline:.2f}x)")


if __name__ == "__main__":
    main()
