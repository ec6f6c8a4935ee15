"""Append a line to a file; the executor tests run it as a switch or traffic command.

Usage: record.py FILE LINE [SLEEP_SECONDS] [EXIT_CODE]
"""

import sys
import time
from pathlib import Path

path, line = Path(sys.argv[1]), sys.argv[2]
with path.open("a") as handle:
    handle.write(line + "\n")
if len(sys.argv) > 3:
    time.sleep(float(sys.argv[3]))
sys.exit(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
