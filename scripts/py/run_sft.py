"""Train a GPT-2 from scratch on the game with transformers.Trainer (SFT) and evaluate it ID and OOD.

Thin script over the library (seed 002): the same flags as `reasonlens lm sft`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("sft").main(sys.argv[1:], prog_name="run_sft.py")
