"""HTTP route handlers; the URLs that reach them are in ``api/app.py`` (``ROUTES``)."""
