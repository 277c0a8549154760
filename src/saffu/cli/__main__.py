"""``python -m saffu.cli``: the ``saffu`` command."""

import sys

from saffu.cli import main

sys.exit(main())
