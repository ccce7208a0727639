"""Micro-batching: concurrent requests for one model answered by one call of the model.

A tree ensemble or an ONNX graph costs nearly the same for one row as for a few dozen, so under
concurrent load gathering requests raises throughput. The first request of a batch waits at most
``max_wait_seconds`` for others; a batch is cut as soon as it holds ``max_rows``. Each request gets
exactly its own rows' predictions back, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np


class MicroBatcher:
    """Gathers matrices submitted on one event loop into batches for ``predict``."""

    def __init__(
        self, predict: Callable[[np.ndarray], np.ndarray], *, max_wait_seconds: float, max_rows: int
    ) -> None:
        self._predict = predict
        self.max_wait_seconds = max_wait_seconds
        self.max_rows = max_rows
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0

    async def predict(self, matrix: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((matrix, future))
        self._rows += matrix.shape[0]
        if self._rows >= self.max_rows:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_seconds, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._rows = self._pending, [], 0
        if not pending:
            return
        self.batches += 1
        try:
            predictions = self._predict(np.concatenate([m for m, _ in pending]))
        except Exception as exc:  # every waiting request gets the error
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for matrix, future in pending:
            end = start + matrix.shape[0]
            if not future.done():
                future.set_result(predictions[start:end])
            start = end
