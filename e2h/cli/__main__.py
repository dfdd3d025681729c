"""``python -m e2h.cli``: the `e2h` command (how the study and torchrun start it)."""

import sys

from e2h.cli.main import main

sys.exit(main())
