"""``python -m hub`` is the ``foyer`` command."""

import sys

from hub.cli import main

sys.exit(main())
