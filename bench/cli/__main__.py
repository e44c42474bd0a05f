"""`python -m highway.bench.cli`: the same as `highway-bench`."""
import sys

from highway.bench.cli import main

sys.exit(main())
