"""Rate limits on the front doors (search, ask, batched questions, upload), per user and per API token.

A request made with a token counts against that token (an internal app has its own allowance and
cannot use up its owner's); any other request counts against the signed-in user. Commands and the
worker are not limited: they are not called by the public.

Counting is a sliding window over two fixed windows in Redis: the previous window's count weighs
by the share of it still inside the last `seconds`. It is atomic (INCR first, given back when over)
and costs two round trips. While Redis cannot be reached requests are let through and a warning is
logged: the limits protect the service, and refusing everyone would be the outage they prevent.
"""

import functools
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from redis import RedisError

logger = logging.getLogger(__name__)

ACTIONS = ("search", "ask", "batch", "upload")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Limit:
    count: int
    seconds: int


class RateLimited(Exception):
    """Over the limit; `retry_after` is the number of seconds until a request would be allowed."""

    def __init__(self, action: str, retry_after: int):
        self.action, self.retry_after = action, retry_after
        super().__init__(f"too many {action} requests; try again in {retry_after} s")


@functools.cache  # called on every limited request with the same setting
def parse_limits(text: str) -> dict[str, Limit]:
    """'search=120/m,ask=20/m,batch=1000/h,upload=1000/h' → {action: Limit}; an action left out is
    not limited."""
    limits = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        action, _, rate = item.partition("=")
        count, _, unit = rate.partition("/")
        if action not in ACTIONS or not count.isdigit() or int(count) < 1 or unit not in UNITS:
            raise ImproperlyConfigured(
                f"KB_RATE_LIMITS: {item!r} is not ACTION=COUNT/UNIT with ACTION one of "
                f"{', '.join(ACTIONS)} and UNIT one of {', '.join(UNITS)}"
            )
        limits[action] = Limit(int(count), UNITS[unit])
    return limits


def caller_key(request) -> str:
    """Whose allowance a request uses: its API token's, else its user's."""
    token = getattr(request, "auth", None)
    if token is not None and getattr(token, "pk", None) is not None:
        return f"token:{token.pk}"
    return f"user:{request.user.pk}"


def consume(action: str, request, cost: int = 1) -> None:
    """Count `cost` requests of `action` for the caller of `request`, or raise RateLimited."""
    limit = parse_limits(settings.KB_RATE_LIMITS).get(action)
    if limit is None:
        return
    now = time.time()
    window, into = divmod(now, limit.seconds)
    key = f"rate:{action}:{caller_key(request)}:"
    current_key, previous_key = f"{key}{int(window)}", f"{key}{int(window) - 1}"
    try:
        cache.add(current_key, 0, timeout=2 * limit.seconds)
        current = cache.incr(current_key, cost)
        previous = cache.get(previous_key, 0)
        still_counted = previous * (1 - into / limit.seconds)
        if still_counted + current <= limit.count:
            return
        cache.decr(current_key, cost)
    except RedisError as error:
        logger.warning("rate limits not applied, the cache is unreachable: %s", error)
        return
    excess = still_counted + current - limit.count
    raise RateLimited(action, _seconds_until_freed(excess, previous, current - cost, into, limit))


def _seconds_until_freed(excess: float, previous: int, current: int, into: float, limit: Limit) -> int:
    """How long until `excess` requests have left the sliding window: the previous window's share
    drains over the rest of this window, then this window's count drains over the next one."""
    rest = limit.seconds - into
    if previous and excess <= previous * rest / limit.seconds:
        wait = excess / previous * limit.seconds
    else:
        excess -= previous * rest / limit.seconds
        wait = rest + (excess / current * limit.seconds if current else 0)
    return max(1, math.ceil(min(wait, 2 * limit.seconds)))
