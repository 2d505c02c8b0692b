"""``python -m async_dag``: the ``async-dag`` command line."""

import sys

from .cli import main

sys.exit(main())
