"""`python -m husvakt.cli`."""

import sys

from husvakt.cli import main

sys.exit(main())
