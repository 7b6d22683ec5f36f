"""`python -m slimformer.cli`: the same as the `slimformer` script (for environments without it)."""

import sys

from slimformer.cli import main

sys.exit(main())
