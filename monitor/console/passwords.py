"""Password hashes for the console's own login, made and checked with Argon2id
(argon2-cffi's ``PasswordHasher``, its recommended parameters, RFC 9106).

Checking costs tens of milliseconds of CPU on purpose; the server runs it in a thread.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()


@functools.cache
def _decoy() -> str:
    """Checked against when the user does not exist, so that an unknown name costs as long
    as a wrong password and the timing does not tell which names exist (made once, on the
    first login, not at import)."""
    return _HASHER.hash("a password nobody has")


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` for ``console.users.<name>.password_hash``."""
    if not password:
        raise ValueError("the password is empty")
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Does ``password`` match ``stored_hash``?  None (no such user) is checked against a
    decoy and is always False; a malformed hash is False, never an exception."""
    try:
        ok = _HASHER.verify(stored_hash or _decoy(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return ok and stored_hash is not None
