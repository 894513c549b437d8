"""SQL front end: split a request into statements, unwrap EXECUTE AS USER, classify each
statement into a frozen dataclass (``split.py``, ``classify.py``, ``statements.py``)."""
