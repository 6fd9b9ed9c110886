#!/usr/bin/env python3
"""Record the activations of every Q-network layer for an input file (seed 001's first step).

Thin script over :mod:`reasonlens.cli.agent_tools`; ``--help`` lists the flags. Run it from this
folder so the guide's relative paths (``../Agent_Storage/...``) resolve: see README.md here.
"""

import sys

from reasonlens.cli.agent_tools import main_extract

if __name__ == "__main__":
    sys.exit(main_extract())
