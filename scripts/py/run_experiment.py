"""The whole SFT-vs-RL study in one run: datasets, SFT in two regimes, GRPO arms and the SFT control over
seeds, evaluation with intervals, circuits, and report.html (seed 002's question, issue [K]).

Thin script over the library: the same arguments as `reasonlens lm experiment`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("experiment").main(sys.argv[1:], prog_name="run_experiment.py")
