"""Who runs a statement: the authenticated user, their role and the default namespace."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .catalog import ADMIN_ROLES, DEFAULT_NAMESPACE, ROLES


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated caller. The API builds one per request from the verified token;
    ``EXECUTE AS USER`` derives an impersonated one (target id, role ``user``)."""

    user_id: str
    role: str
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    def impersonating(self, user_id: str) -> Session:
        return replace(self, user_id=user_id, role="user")

    def with_namespace(self, namespace: str) -> Session:
        return replace(self, namespace=namespace)
