#!/usr/bin/env python3
"""Grade a folder of fprop/bprop submissions: ``python grader.py SUBMIT_DIR``.

See README.md and ``python grader.py --help``.
"""

import sys

from gradcheck.cli import main

if __name__ == "__main__":
    sys.exit(main())
