"""Live queries (PROTOCOL §6): subscriptions matched against every commit and fanned out
through bounded per-connection outboxes. The WebSocket protocol itself lives in ``api/ws``."""

from .outbox import Outbox as Outbox
from .outbox import OutboxClosed as OutboxClosed
from .query import LiveQuery as LiveQuery
from .query import LiveQueryError as LiveQueryError
from .query import compile_live_query as compile_live_query
from .registry import LiveRegistry as LiveRegistry
from .subscription import Change as Change
from .subscription import InitialRows as InitialRows
from .subscription import Page as Page
from .subscription import Subscription as Subscription
