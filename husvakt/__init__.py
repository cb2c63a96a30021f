"""husvakt: watches buildings through their sensors and turns trouble into cases.

This package holds only the command line and the all-in-one runner; the work is done by
`gateway`, `stream` and `casebridge`.
"""

__version__ = "0.1.0"
