"""``python -m marlkit`` runs the command line (see ``marlkit.cli``)."""

import sys

from marlkit.cli import main

sys.exit(main())
