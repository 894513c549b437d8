"""Operator tools behind the ``sluice`` console script.

The public surface is ``tools.cli.main`` (the console script). ``tools.wal_inspect`` holds the
read-only WAL commands. Tools import only ``wal`` (and ``engine.events`` for decoding), so
nothing here can reach into the engine's or the server's state.
"""
