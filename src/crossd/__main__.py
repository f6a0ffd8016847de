"""``python -m crossd COMMAND ...``: the same as the ``crossd`` command (for environments without its script)."""

import sys

from crossd.cli import main

if __name__ == "__main__":
    sys.exit(main())
