"""Failed sign-in lockout: after KB_SIGNIN_MAX_FAILURES wrong passwords for a user name within
KB_SIGNIN_LOCKOUT_SECONDS, that name cannot sign in (even with the right password) until the
lockout has run out.

Counted per user name, whether or not such a user exists, so the lockout tells nothing about
which accounts exist; not per address, because a whole office often reaches the server through one
proxy and would be locked out together. A successful sign-in clears the count. The counts live in
Redis; while it cannot be reached nobody is locked out (and a warning is logged).
"""

import hashlib
import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from redis import RedisError

from kb.services import audit

logger = logging.getLogger(__name__)


def _keys(username: str) -> tuple[str, str]:
    # Hashed: user names are personal data and would otherwise sit in Redis in clear.
    name = hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]
    return f"sign-in:failures:{name}", f"sign-in:locked:{name}"


def locked_for(username: str) -> int:
    """Seconds the user name is still locked out for; 0 when it may sign in."""
    try:
        until = cache.get(_keys(username)[1], 0)
    except RedisError as error:
        logger.warning("sign-in lockout not checked, the cache is unreachable: %s", error)
        return 0
    return max(math.ceil(until - time.time()), 0)


def record_failure(username: str, request=None) -> None:
    """Count a failed sign-in; the one that reaches the limit starts the lockout (and is audited)."""
    failures_key, locked_key = _keys(username)
    seconds = settings.KB_SIGNIN_LOCKOUT_SECONDS
    try:
        cache.add(failures_key, 0, timeout=seconds)
        failures = cache.incr(failures_key)
        if failures < settings.KB_SIGNIN_MAX_FAILURES or not cache.add(
            locked_key, time.time() + seconds, timeout=seconds
        ):
            return
        cache.delete(failures_key)
    except RedisError as error:
        logger.warning("failed sign-in not counted, the cache is unreachable: %s", error)
        return
    audit.record(
        action="sign_in_locked",
        actor_name=username[:150],
        request=request,
        seconds=seconds,
        failures=failures,
    )


def record_success(username: str) -> None:
    try:
        cache.delete(_keys(username)[0])
    except RedisError as error:
        logger.warning("failed sign-ins not cleared, the cache is unreachable: %s", error)
