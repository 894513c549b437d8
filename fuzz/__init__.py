"""Long-running fuzz targets (``make fuzz``); each module has a ``main()`` with ``--seconds``
and ``--seed``, and a short run of each sits in the test suite."""
