"""`python -m sav_router.cli ...` is the `sav-router` command."""

import sys

from sav_router.cli import main

sys.exit(main())
