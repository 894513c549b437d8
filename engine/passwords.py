"""Password hashing and the password rules of PROTOCOL §2.3.

bcrypt is CPU-heavy on purpose: callers run ``hash_password``/``check_password`` in a worker
thread (``trio.to_thread.run_sync``). Hashes are ``$2b$`` strings interchangeable with the
reference implementation's.
"""

from __future__ import annotations

import bcrypt

from .errors import InvalidOperation

PASSWORD_MIN_BYTES = 8
# bcrypt only reads the first 72 bytes; longer passwords would silently share a hash.
PASSWORD_MAX_BYTES = 72
COMMON_PASSWORDS = frozenset({
    "password", "123456", "12345678", "123456789", "1234567890", "qwerty", "qwerty123",
    "letmein", "passw0rd", "password1", "password123", "admin", "admin123", "welcome",
    "welcome1", "iloveyou", "monkey", "dragon", "abc123", "111111", "000000", "sunshine",
    "football", "changeme",
})


def hash_password(password: str, cost: int) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def check_password(password: str, hashed: str) -> bool:
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def validate_default_policy(password: str) -> None:
    """The policy of ``/v1/api/auth/setup``: 8-72 bytes, not a common password."""
    size = len(password.encode())
    if size < PASSWORD_MIN_BYTES:
        raise InvalidOperation(f"Password must be at least {PASSWORD_MIN_BYTES} characters")
    if size > PASSWORD_MAX_BYTES:
        raise InvalidOperation(f"Password must be at most {PASSWORD_MAX_BYTES} bytes")
    if password.lower() in COMMON_PASSWORDS:
        raise InvalidOperation("Password is too common")


def validate_complexity(password: str) -> None:
    """The stricter policy CREATE/ALTER USER apply when enforce_password_complexity is on."""
    validate_default_policy(password)
    checks = [(str.isupper, "an upper-case letter"), (str.islower, "a lower-case letter"),
              (str.isdigit, "a digit"), (lambda c: not c.isalnum(), "a symbol")]
    for check, what in checks:
        if not any(check(c) for c in password):
            raise InvalidOperation(f"Password must contain {what}")


def validate_for_user_sql(password: str, *, enforce_complexity: bool) -> None:
    """CREATE/ALTER USER: no length rule unless complexity is enforced (PROTOCOL §2.3), but
    never more than bcrypt can use."""
    if not password:
        raise InvalidOperation("Password must not be empty")
    if enforce_complexity:
        validate_complexity(password)
    elif len(password.encode()) > PASSWORD_MAX_BYTES:
        raise InvalidOperation(f"Password must be at most {PASSWORD_MAX_BYTES} bytes")
