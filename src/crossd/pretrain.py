"""``python -m crossd.pretrain`` / ``torchrun ... -m crossd.pretrain``: the same as ``python -m crossd pretrain``.

It hands over to ``crossd``'s ``__main__`` by module name: the library never imports the command line above it."""

import runpy
import sys

if __name__ == "__main__":
    sys.argv.insert(1, "pretrain")
    runpy.run_module("crossd", run_name="__main__", alter_sys=True)
