"""Start-up cost: ``import captum_neuronpath`` and ``neuronpath --help`` against ``import captum.attr``.

Each command runs in a fresh Python process, the three interleaved in every round; the
time is the whole process's wall time (interpreter start included, the same for all
three), and each ratio is the median over the rounds of the ratio within a round.

    python benchmarks/startup.py
    python benchmarks/startup.py --rounds 10
"""

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import captum.attr": [sys.executable, "-c", "import captum.attr"],
    "import captum_neuronpath": [sys.executable, "-c", "import captum_neuronpath"],
    "neuronpath --help": [sys.executable, "-m", "captum_neuronpath", "--help"],
}


def wall_time(command: list) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()
    wall_time(COMMANDS["import captum_neuronpath"])  # warm the file system cache
    times = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    reference = times["import captum.attr"]
    print(f"medians of {args.rounds} interleaved rounds, each command in a fresh process\n")
    print("| command | seconds | ratio to import captum.attr |")
    print("| --- | --- | --- |")
    for name, values in times.items():
        ratio = statistics.median(value / base for value, base in zip(values, reference))
        print(f"| {name} | {statistics.median(values):.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
