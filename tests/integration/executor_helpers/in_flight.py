"""Print the number of requests in flight, read from a file (0 when it is missing).

Usage: in_flight.py FILE
"""

import sys
from pathlib import Path

path = Path(sys.argv[1])
print(path.read_text().strip() if path.exists() else "0")
