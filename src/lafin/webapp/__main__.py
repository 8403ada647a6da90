"""``python -m lafin.webapp``: the demo's own command line (:func:`lafin.webapp.server.main`)."""

import sys

from lafin.webapp.server import main

sys.exit(main())
