"""Web work lists for technicians and dispatchers: server-rendered pages that work without
JavaScript (reading, acknowledging, every action as a plain form), made live with a few lines of
script (server-sent events). Served by `husvakt cases serve` next to the API, same users."""

from casebridge.web.pages import mount_web

__all__ = ["mount_web"]
