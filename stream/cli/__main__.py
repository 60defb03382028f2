"""`python -m stream.cli`: the `segments` command, as the tests and benchmarks start it."""
import sys

from stream.cli.main import main

sys.exit(main())
