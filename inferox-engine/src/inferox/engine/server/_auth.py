"""The bearer-token check every transport applies (REST headers, gRPC metadata, the OpenAI API)."""

from __future__ import annotations

import hmac

__all__ = ["bearer_ok"]


def bearer_ok(authorization: str | bytes | None, token: str) -> bool:
    """Whether an ``Authorization`` value is ``Bearer <token>`` (scheme case-insensitive; the
    token compared in constant time)."""
    if authorization is None:
        return False
    text = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    scheme, _, given = text.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
