"""``torchrun --nproc_per_node=N -m crossd.evaluate <crossd evaluate flags>``: each rank runs its share of the jobs
(on its ``LOCAL_RANK`` GPU, or the CPU with gloo) and rank 0 merges the results. Without ``torchrun`` it is
``crossd evaluate``."""

import sys

from crossd.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
