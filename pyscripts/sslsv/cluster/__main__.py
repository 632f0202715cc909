"""``python3 -m sslsv.cluster ...``: the registry's command line (:func:`sslsv.cluster.registry.main`)."""

import sys

from .registry import main

sys.exit(main())
