"""The live dashboard: window counts from the results topic, pushed to browsers over WebSocket.

:func:`~clickstream.dashboard.app.create_app` builds the ASGI app; its
:class:`~clickstream.dashboard.hub.Hub` reads the topic in a background thread. The page and
its chart library (uPlot, vendored) are in ``static/``: nothing is loaded from the internet.
"""

from clickstream.dashboard.app import create_app
from clickstream.dashboard.hub import Hub

__all__ = ["Hub", "create_app"]
