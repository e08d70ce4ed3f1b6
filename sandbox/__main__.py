"""`python -m sandbox demo [--users M] [--servers N] [--fail K] [--offline K] [--scheduled] [--keep DIR]`."""

import sys

from sandbox.cli import main

sys.exit(main())
