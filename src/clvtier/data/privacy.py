"""Privacy helpers: pseudonymous customer ids."""

from __future__ import annotations

import hashlib
import hmac
import os

import pandas as pd

from clvtier.errors import InputError

SALT_ENV = "CLVTIER_ID_SALT"


def pseudonymize(ids: pd.Series, salt: str) -> pd.Series:
    """HMAC-SHA256 of each id under ``salt``, first 20 hex digits: stable for one salt, not
    reversible without it."""
    key = salt.encode()
    return ids.astype(str).map(lambda v: hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:20])


def id_salt() -> str:
    salt = os.environ.get(SALT_ENV, "")
    if len(salt) < 16:
        raise InputError(
            SALT_ENV,
            "pseudonymised ids need a secret salt of at least 16 characters in "
            f"the environment variable {SALT_ENV}",
        )
    return salt


def pseudonym_sql(expr: str, salt: str) -> str:
    """DuckDB SQL computing :func:`pseudonymize` of the text ``expr`` (HMAC-SHA256, RFC 2104, first
    20 hex digits), so ids can be replaced inside the engine before anything is written."""
    key = salt.encode()
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner, outer = (bytes(b ^ pad for b in key).hex() for pad in (0x36, 0x5C))
    text = f"encode(CAST({expr} AS VARCHAR))"
    return f"left(sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || {text}))), 20)"


__all__ = ["SALT_ENV", "id_salt", "pseudonym_sql", "pseudonymize"]
