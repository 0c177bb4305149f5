"""When to try a request again, and how long to wait first."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass

# Answers that say "the same request may succeed later": rate limited, a dependency down.
RETRY_STATUSES = frozenset({429, 503})
# Methods a broken connection may be retried on (RFC 9110 9.2.2); a connection that was never
# made (connect error or timeout) is retried on any method, as nothing was sent.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3);
    None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_retries` more attempts, waiting in all at most `max_wait` seconds.

    The wait is the answer's `Retry-After` when it gives one, else an exponential backoff
    (`backoff`, doubled each attempt, at most `max_backoff`). A `Retry-After` longer than what
    is left of `max_wait` is not waited for: the error is raised at once.
    """

    max_retries: int = 3
    max_wait: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return float(min(self.backoff * (2**attempt), self.max_backoff))

    def allows(self, attempt: int, waited: float, delay: float) -> bool:
        """Whether attempt number `attempt + 1` may follow, after `delay` more seconds."""
        return attempt < self.max_retries and waited + delay <= self.max_wait
