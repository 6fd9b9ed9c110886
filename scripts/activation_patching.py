"""Seed 000's single activation-patching experiment; see `python scripts/activation_patching.py --help`."""

import sys

from reasonlens.cli.patch import main_single

if __name__ == "__main__":
    sys.exit(main_single())
