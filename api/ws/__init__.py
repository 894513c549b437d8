"""``GET /v1/ws``: the live-query WebSocket (PROTOCOL §6). The route handler is
``websocket``; ``connection.py`` runs a connection's tasks, ``messages.py`` handles each
client message, ``frames.py`` checks and encodes frames."""

from .upgrade import websocket as websocket
