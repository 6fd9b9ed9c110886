#!/usr/bin/env python3
"""Patch neurons of a Q-network from source activations and record the action changes (seed 001).

Thin script over :mod:`reasonlens.cli.agent_tools`; ``--help`` lists the flags. Run it from this
folder so the guide's relative paths (``../Agent_Storage/...``) resolve: see README.md here.
"""

import sys

from reasonlens.cli.agent_tools import main_patch

if __name__ == "__main__":
    sys.exit(main_patch())
