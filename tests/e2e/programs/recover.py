"""Recovers a run from a separate process (so a test can kill the recovery too).

Usage: python recover.py HOME RUN_ID [DB_URL]
"""

import sys

import heddle

if __name__ == "__main__":
    heddle.init(sys.argv[1], db_url=sys.argv[3] if len(sys.argv) > 3 else None)
    print(heddle.recover(sys.argv[2]).outputs())
