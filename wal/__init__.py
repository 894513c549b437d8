"""Sluice's write-ahead log: segmented, CRC32C-checked, group-committed under trio.

Imports only the standard library, trio, crc32c and zstandard.
"""

from ._io import FileIO as FileIO
from .config import FsyncPolicy as FsyncPolicy
from .config import WalConfig as WalConfig
from .errors import RecordTooLargeError as RecordTooLargeError
from .errors import WalClosedError as WalClosedError
from .errors import WalCorruptionError as WalCorruptionError
from .errors import WalError as WalError
from .errors import WalIOError as WalIOError
from .errors import WalLockedError as WalLockedError
from .errors import WalPoisonedError as WalPoisonedError
from .log import Lsn as Lsn
from .log import PendingAppend as PendingAppend
from .log import Wal as Wal
from .log import WalStatistics as WalStatistics
from .log import open_wal as open_wal
from .recovery import RecoveryReport as RecoveryReport
from .scan import Frame as Frame
from .scan import iter_frames as iter_frames
from .scan import read_frame_at as read_frame_at
