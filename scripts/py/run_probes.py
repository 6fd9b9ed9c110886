"""Linear probes on the residual stream per layer, position and distribution.

Thin script over the library (seed 002): the same flags as `reasonlens lm probes`; run with --help.
"""

import sys

from reasonlens.cli.lm import command

if __name__ == "__main__":
    command("probes").main(sys.argv[1:], prog_name="run_probes.py")
