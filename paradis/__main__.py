import sys

from paradis.cli import main

sys.exit(main())
