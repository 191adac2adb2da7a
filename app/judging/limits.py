"""Limits on calls to a judge endpoint that hold across worker processes.

With a Redis broker, every worker shares one rate schedule and one concurrency count in
Redis; on the embedded default (no Redis) the limits hold inside the one worker process.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from app.core.config import get_settings

# Each call reserves the next free slot: slot = max(now, last + interval).
_RESERVE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(now, last + interval)
redis.call('SET', KEYS[1], tostring(slot), 'PX', math.ceil((slot - now) * 1000) + 60000)
return tostring(slot)
"""

# A semaphore as a sorted set of holders; holders older than the lease are dropped.
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 60)
  return 1
end
return 0
"""


class Limiter:
    """At most ``concurrency`` calls at once and ``per_minute`` calls a minute, per key."""

    def __init__(self, key: str, *, concurrency: int, per_minute: int,
                 lease_s: float = 300.0) -> None:
        self.key = key
        self.concurrency = max(1, concurrency)
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.lease_s = lease_s
        self.redis = _redis()

    @contextmanager
    def slot(self) -> Iterator[None]:
        token = self._acquire()
        try:
            self._wait_rate()
            yield
        finally:
            self._release(token)

    def _wait_rate(self) -> None:
        if not self.interval:
            return
        if self.redis is None:
            slot = _local_reserve(self.key, self.interval)
        else:
            slot = float(self.redis.eval(_RESERVE, 1, f"{self._prefix()}rate:{self.key}",
                                         time.time(), self.interval))
        delay = slot - time.time()
        if delay > 0:
            time.sleep(delay)

    def _acquire(self) -> str:
        token = uuid.uuid4().hex
        if self.redis is None:
            _local_semaphore(self.key, self.concurrency).acquire()
            return token
        while not self.redis.eval(_ACQUIRE, 1, f"{self._prefix()}conc:{self.key}", time.time(),
                                  self.concurrency, self.lease_s, token):
            time.sleep(0.02)
        return token

    def _release(self, token: str) -> None:
        if self.redis is None:
            _local_semaphore(self.key, self.concurrency).release()
        else:
            self.redis.zrem(f"{self._prefix()}conc:{self.key}", token)

    @staticmethod
    def _prefix() -> str:
        return get_settings().broker_key_prefix + "tandem:limit:"


def _redis():  # noqa: ANN202
    url = get_settings().resolved_broker_url
    if not url.startswith("redis"):
        return None
    return _redis_client(url)


@lru_cache(maxsize=4)
def _redis_client(url: str):  # noqa: ANN202
    import redis

    return redis.Redis.from_url(url)


_local_lock = threading.Lock()
_local_slots: dict[str, float] = {}
_local_semaphores: dict[tuple[str, int], threading.Semaphore] = {}


def _local_reserve(key: str, interval: float) -> float:
    with _local_lock:
        slot = max(time.time(), _local_slots.get(key, 0.0) + interval)
        _local_slots[key] = slot
        return slot


def _local_semaphore(key: str, concurrency: int) -> threading.Semaphore:
    with _local_lock:
        return _local_semaphores.setdefault((key, concurrency), threading.Semaphore(concurrency))
