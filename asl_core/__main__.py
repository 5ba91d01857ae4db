"""``python -m asl_core COMMAND ...`` is ``asl-lens COMMAND ...``."""

import sys

from asl_core.cli import main

sys.exit(main())
