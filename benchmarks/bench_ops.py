"""Cross-D speed and memory benchmark; the same as ``crossd bench`` (see ``crossd bench --help``).

python benchmarks/bench_ops.py --memory --json benchmarks/results.json
"""

import sys

from crossd.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
