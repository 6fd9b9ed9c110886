"""Accuracy of a checkpoint on the ID test set and every OOD set (standard JSON).

Thin script over the library (seed 002): the same flags as `reasonlens lm evaluate`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("evaluate").main(sys.argv[1:], prog_name="run_evaluation.py")
