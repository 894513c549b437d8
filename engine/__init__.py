"""Sluice engine: not built yet (see the open issues). The package exists so the layout and
the import-direction test are in place from the start."""
