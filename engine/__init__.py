"""Sluice's engine: events, catalog, USER/SHARED/STREAM tables as projections of the WAL,
SQL (sqlglot classification, DataFusion queries) and replay.

Imports only the standard library, trio, sqlglot, pyarrow, datafusion, crc32c, bcrypt and
``wal``; never ``api``.
"""

from .clock import Clock as Clock
from .clock import ManualClock as ManualClock
from .clock import SystemClock as SystemClock
from .config import EngineConfig as EngineConfig
from .engine import Engine as Engine
from .engine import open_engine as open_engine
from .errors import AlreadyExists as AlreadyExists
from .errors import BatchParseError as BatchParseError
from .errors import EmptySql as EmptySql
from .errors import EngineError as EngineError
from .errors import InvalidInput as InvalidInput
from .errors import InvalidOperation as InvalidOperation
from .errors import InvalidParameter as InvalidParameter
from .errors import InvalidSql as InvalidSql
from .errors import InvalidValue as InvalidValue
from .errors import NotFound as NotFound
from .errors import ParamsWithBatch as ParamsWithBatch
from .errors import PermissionDenied as PermissionDenied
from .errors import StorageUnavailable as StorageUnavailable
from .errors import TableNotFound as TableNotFound
from .errors import TransactionError as TransactionError
from .ingest import IngestResult as IngestResult
from .ingest import ingest_body as ingest_body
from .ingest import ingest_rows as ingest_rows
from .session import Session as Session
