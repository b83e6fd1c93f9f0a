"""python -m pyalloc: the pyalloc command line (see pyalloc.cli)."""

import sys

from pyalloc.cli import main

sys.exit(main())
