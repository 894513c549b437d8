"""The engine's exception family. ``api/errors.py`` is the only place that maps these to HTTP
statuses and KalamDB error codes; here each error only says *what* went wrong, with the
message text the protocol shows (PROTOCOL.md §1.3).

Messages never embed secrets (passwords, hashes, tokens).
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


class InvalidSql(EngineError):
    """The SQL is malformed or not allowed.

    ``at_classify`` marks failures of the classifier/parser (their message is redacted for
    non-admins by the API) as opposed to runtime validation (message preserved).
    ``parse_errors`` carries sqlglot's structured errors when sqlglot produced them.
    """

    def __init__(self, message: str, *, at_classify: bool = False,
                 parse_errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.at_classify = at_classify
        self.parse_errors = parse_errors or []


class BatchParseError(EngineError):
    """The request's SQL could not be split into statements (e.g. an unterminated quote)."""


class EmptySql(EngineError):
    """No statements were given."""


class InvalidInput(EngineError):
    """A structurally invalid request (e.g. EXECUTE AS USER around several statements)."""


class InvalidParameter(EngineError):
    """A ``$n`` parameter is missing, of an unsupported kind, or too large."""


class ParamsWithBatch(EngineError):
    """Parameters were given with more than one statement."""


class PermissionDenied(EngineError):
    """The session's role may not do this (PROTOCOL.md §2.7)."""


class NotFound(EngineError):
    """A namespace, user, storage or other named object does not exist."""


class TableNotFound(NotFound):
    """A table does not exist (the API redacts this message for non-admins)."""


class AlreadyExists(EngineError):
    """A named object, or a primary key value, already exists."""


class InvalidOperation(EngineError):
    """The statement is well-formed but not allowed in this state or on this table type."""


class InvalidValue(EngineError):
    """A value cannot be stored in a column (type, range, NOT NULL, size)."""


class TransactionError(EngineError):
    """Misuse of BEGIN/COMMIT/ROLLBACK, or a transaction left open at the end of a batch."""


class StorageUnavailable(EngineError):
    """The write-ahead log or a projection cannot accept writes (I/O failure, poisoned WAL).

    ``__cause__`` holds the underlying ``WalError``/``OSError``. Not a client error.
    """
