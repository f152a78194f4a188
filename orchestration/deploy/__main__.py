"""``python -m orchestration.deploy``: the deploy command line (:func:`orchestration.deploy.main`)."""

import sys

from orchestration.deploy.cli import main

sys.exit(main())
