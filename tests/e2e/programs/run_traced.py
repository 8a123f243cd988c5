"""Runs steps.traced imported from its module, so its traces are named ``steps.*`` in
the first run as on recovery (unlike ``python steps.py``, where they are ``__main__.*``).

Usage: python run_traced.py HOME N
"""

import sys

from steps import traced

import heddle

if __name__ == "__main__":
    heddle.init(sys.argv[1])
    print(heddle.run(traced, int(sys.argv[2])).outputs())
