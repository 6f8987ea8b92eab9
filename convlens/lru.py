"""A least-recently-used cache shared by the threads of a server, bounded by the total cost of
its entries (their number by default; the app's images by their bytes)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class LRU(Generic[Value]):
    """Values by key, the least recently used dropped first once their costs exceed `max_cost`
    (the last one is kept whatever it costs). A value is computed outside the lock, so that one
    slow computation does not hold up the others; two threads missing the same key may both
    compute it, and the first one kept is the one returned from then on. Values are shared:
    callers copy what they change."""

    def __init__(self, max_cost: float, cost: Callable[[Value], float] = lambda _: 1) -> None:
        self.max_cost = max_cost
        self.total = 0.0
        self._cost = cost
        self._entries: OrderedDict[Hashable, tuple[Value, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Value]) -> Value:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        value = compute()
        cost = self._cost(value)
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (value, cost)
                self.total += cost
            while self.total > self.max_cost and len(self._entries) > 1:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.total -= dropped
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = 0.0
