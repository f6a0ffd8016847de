"""``python -m crossd.pretrain`` / ``torchrun ... -m crossd.pretrain``: the same as ``crossd pretrain``."""

import sys

from crossd.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
