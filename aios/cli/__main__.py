"""`python -m aios.cli`: the same as the `aios` console script."""

import sys

from aios.cli.app import main

sys.exit(main())
