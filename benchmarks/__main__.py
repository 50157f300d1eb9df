"""``python -m benchmarks``: run the whole suite and print the table."""

import sys

from .run import main

sys.exit(main())
