"""``python -m orchestration.report results --tracking-uri URI``: the reproduction report."""

import sys

from orchestration.report.cli import main

sys.exit(main())
