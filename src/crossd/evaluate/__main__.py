"""``torchrun --nproc_per_node=N -m crossd.evaluate <crossd evaluate flags>``: the same as ``python -m crossd evaluate``
(each rank runs its share of the jobs on its ``LOCAL_RANK`` GPU, or the CPU with gloo, and rank 0 merges).

It hands over to ``crossd``'s ``__main__`` by module name: the library never imports the command line above it."""

import runpy
import sys

if __name__ == "__main__":
    sys.argv.insert(1, "evaluate")
    runpy.run_module("crossd", run_name="__main__", alter_sys=True)
