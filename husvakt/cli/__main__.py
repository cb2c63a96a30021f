"""`python -m husvakt.cli`."""

import sys

from husvakt.cli import main

if __name__ == "__main__":  # not again in a worker process `husvakt replay` spawns
    sys.exit(main())
