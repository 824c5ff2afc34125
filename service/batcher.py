"""Per-model dynamic batcher (design §4): token budget, size cap, wait window, length grouping."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from service.errors import DeadlineExceeded, Overloaded, PayloadTooLarge, ShuttingDown

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchConfig:
    max_batch_tokens: int = 8192
    max_batch_size: int = 16  # the settings default (service/settings.py says why)
    max_wait_ms: float = 5.0
    max_queue_tokens: int = 65536
    lookahead: int = 256
    # Batches of this model that may run at once, each on its own thread. On 2 cores two
    # single-threaded runs side by side beat one run on 2 intra-op threads (docs/benchmarks.md).
    lanes: int = 1
    # Padding tokens an item may add to a batch; beyond it the item waits for a batch of its own
    # length. None: no limit. On CPU a padded token costs what a real one does, and a run's fixed
    # cost is only about 16 tokens' worth (MiniLM int8, one thread: 1.4 ms for 1 x 8 tokens, then
    # ~0.075 ms a token), so merging pays only while it adds few padding tokens (the registry's
    # default, 8, was the best of a sweep).
    pad_allowance: int | None = None


@dataclass(eq=False, slots=True)
class Pending(Generic[T]):
    """One queued item: what to run, its token count, when it came, and the caller's future."""

    item: T
    tokens: int
    future: asyncio.Future
    arrived: float
    deadline: float | None
    started: float = 0.0
    inference_s: float = 0.0


@dataclass(slots=True)
class Timing:
    """Where a request's time went, for metrics and the x-*-time-ms headers."""

    queue_s: float = 0.0
    inference_s: float = 0.0


class BatchObserver(Protocol):
    def on_batch(self, size: int, padded_tokens: int, real_tokens: int, seconds: float) -> None: ...
    def on_queue(self, items: int, tokens: int) -> None: ...
    def on_queue_wait(self, seconds: float) -> None: ...
    def on_rejected(self, reason: str) -> None: ...


class _NoObserver:
    def on_batch(self, size: int, padded_tokens: int, real_tokens: int, seconds: float) -> None: ...
    def on_queue(self, items: int, tokens: int) -> None: ...
    def on_queue_wait(self, seconds: float) -> None: ...
    def on_rejected(self, reason: str) -> None: ...


@dataclass
class _Selection:
    indices: list[int] = field(default_factory=list)
    full: bool = False  # closed by the token budget or the size cap, not by running out of items


class Batcher(Generic[T, R]):
    """Collects items from many callers into padded batches run off the event loop.

    `process(items) -> results` runs on an inference thread and must return one result per item,
    in order. Up to `config.lanes` batches run at once; each lane is a loop that closes a batch,
    runs it and waits for it. The threads are the batcher's own (one per lane), or `executor`,
    a pool shared by every model so that the runs of all models together never use more threads
    than it has (the registry sizes it to the cores).
    """

    def __init__(
        self,
        process: Callable[[list[T]], Sequence[R]],
        config: BatchConfig,
        observer: BatchObserver | None = None,
        name: str = "model",
        executor: Executor | None = None,
    ) -> None:
        if config.lanes < 1:
            raise ValueError("lanes must be at least 1")
        self._process = process
        self.config = config
        self._observer = observer or _NoObserver()
        self._name = name
        self._queue: list[Pending[T]] = []
        self._queued_tokens = 0
        self._arrival = asyncio.Event()
        self._lanes: list[asyncio.Task] = []
        self._shared_executor = executor
        self._executor: Executor | None = None
        self._stopping = False
        # Exponential average of tokens processed per second, for Retry-After.
        self._tokens_per_s = 0.0

    # -- public surface -----------------------------------------------------------------------

    def start(self) -> None:
        if self._lanes:
            return
        self._executor = self._shared_executor or ThreadPoolExecutor(
            max_workers=self.config.lanes, thread_name_prefix=f"infer-{self._name}"
        )
        loop = asyncio.get_running_loop()
        self._lanes = [
            loop.create_task(self._loop(), name=f"batcher-{self._name}-{lane}")
            for lane in range(self.config.lanes)
        ]

    async def stop(self) -> None:
        """Refuse new work, finish everything already accepted, then release the threads."""
        self._stopping = True
        self._arrival.set()
        if self._lanes:
            await asyncio.gather(*self._lanes)
            self._lanes = []
        if self._executor is not None and self._executor is not self._shared_executor:
            self._executor.shutdown(wait=True)
        self._executor = None

    @property
    def queued_items(self) -> int:
        return len(self._queue)

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    def check_room(self) -> None:
        """Refuse (429) before any work when the queue has no room left at all.

        Callers check this before tokenizing: under overload a refused request should cost
        almost nothing, or refusing steals the cores the model needs.
        """
        if self._queue and self._queued_tokens >= self.config.max_queue_tokens:
            self._observer.on_rejected("overloaded")
            raise Overloaded(
                f"queue of model {self._name!r} is full ({self._queued_tokens} tokens waiting)",
                retry_after_s=self._retry_after(0),
            )

    async def submit(self, item: T, tokens: int, timeout_s: float | None = None) -> R:
        results, _ = await self.submit_many([item], [tokens], timeout_s)
        return results[0]

    async def submit_many(
        self, items: Sequence[T], tokens: Sequence[int], timeout_s: float | None = None
    ) -> tuple[list[R], Timing]:
        """Queue a request's items together (admitted all or none) and await their results."""
        if self._stopping or not self._lanes:
            raise ShuttingDown("the service is shutting down")
        total = sum(tokens)
        if total > self.config.max_queue_tokens:
            # No queue state admits it without starving (under steady load the queue is never
            # empty) or, admitted into an idle queue, without refusing everyone else until it
            # drains: refused as too large, so the client knows that retrying cannot help.
            self._observer.on_rejected("too_long")
            raise PayloadTooLarge(
                f"the request needs {total} tokens, more than model {self._name!r} queues at once "
                f"({self.config.max_queue_tokens}, BERTH_MAX_QUEUE_TOKENS): send fewer or shorter inputs"
            )
        if self._queued_tokens + total > self.config.max_queue_tokens:
            self._observer.on_rejected("overloaded")
            raise Overloaded(
                f"queue of model {self._name!r} is full ({self._queued_tokens} tokens waiting)",
                retry_after_s=self._retry_after(total),
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        deadline = now + timeout_s if timeout_s is not None else None
        pending = [
            Pending(it, n, loop.create_future(), now, deadline) for it, n in zip(items, tokens, strict=True)
        ]
        self._queue.extend(pending)
        self._queued_tokens += total
        self._observer.on_queue(len(self._queue), self._queued_tokens)
        self._arrival.set()
        futures = [p.future for p in pending]
        # asyncio.timeout, not wait_for: its expired() tells our deadline apart from a
        # TimeoutError raised by the runtime inside a batch (a bug: 500, not 504).
        deadline_scope = asyncio.timeout(timeout_s)
        try:
            async with deadline_scope:
                results = await asyncio.gather(*futures)
        except TimeoutError:
            self._release(futures)
            if not deadline_scope.expired():
                raise
            self._observer.on_rejected("deadline")
            raise DeadlineExceeded(f"request not served within {timeout_s:g} s") from None
        except asyncio.CancelledError:
            # The caller went away: items still queued are dropped before they run.
            if not all(f.done() and not f.cancelled() for f in futures):
                self._observer.on_rejected("cancelled")
            self._release(futures)
            raise
        except BaseException:
            # One item failed: its siblings need not run either.
            self._release(futures)
            raise
        timing = Timing(
            queue_s=max(p.started - p.arrived for p in pending),
            inference_s=max(p.inference_s for p in pending),
        )
        return list(results), timing

    # -- the loop -----------------------------------------------------------------------------

    def _retry_after(self, tokens: int) -> int:
        # The measured rate is one batch's; the lanes run that many side by side.
        rate = (self._tokens_per_s or 1000.0) * self.config.lanes
        return max(1, min(60, math.ceil((self._queued_tokens + tokens) / rate)))

    def _release(self, futures: Sequence[asyncio.Future]) -> None:
        """A request is answered without (all of) its results: its queued items leave the
        queue now, so their tokens stop counting against the budget at once."""
        for f in futures:
            f.cancel()
        self._drop_dead()

    def _drop_dead(self) -> None:
        """Remove items whose caller went away (cancelled, timed out) before they can run."""
        alive = [p for p in self._queue if not p.future.done()]
        if len(alive) != len(self._queue):
            self._queue = alive
            self._queued_tokens = sum(p.tokens for p in alive)
            self._observer.on_queue(len(self._queue), self._queued_tokens)

    def _select(self) -> _Selection:
        """Pick the next batch: the oldest item plus its nearest neighbours in length.

        Always taking the oldest item is the aging rule: an item waits for at most the items
        ahead of it, however its length compares. Neighbours come from the first `lookahead`
        items, sorted by length, grown outward while the padded cost and the count fit and
        each newcomer adds at most `pad_allowance` padding tokens (its own shortfall against the
        longest, or the longest's growth times the items already in).
        """
        cfg = self.config
        window = self._queue[: cfg.lookahead]
        order = sorted(range(len(window)), key=lambda i: (window[i].tokens, i))
        pos = order.index(0)
        lo = hi = pos
        chosen = [0]
        longest = window[0].tokens
        anchor = window[0].tokens
        while len(chosen) < cfg.max_batch_size:
            options = []
            if hi + 1 < len(order):
                options.append(("hi", order[hi + 1]))
            if lo > 0:
                options.append(("lo", order[lo - 1]))
            if not options:
                return _Selection(chosen, full=len(self._queue) > len(window))
            options.sort(key=lambda o: (abs(window[o[1]].tokens - anchor), o[1]))
            for side, idx in options:  # noqa: B007 (used after the loop)
                tokens = window[idx].tokens
                padded = max(longest, tokens) * (len(chosen) + 1)
                if padded > cfg.max_batch_tokens:
                    continue
                if cfg.pad_allowance is None or padded - longest * len(chosen) - tokens <= cfg.pad_allowance:
                    break
            else:
                # Closed by the budget or by padding: the rest of the queue is other work, so
                # this batch runs now rather than waiting for company.
                return _Selection(chosen, full=True)
            chosen.append(idx)
            longest = max(longest, window[idx].tokens)
            if side == "hi":
                hi += 1
            else:
                lo -= 1
        return _Selection(chosen, full=True)

    async def _next_batch(self) -> list[Pending[T]] | None:
        """Wait for a batch to close (budget, size or window from its first item) and take it."""
        while True:
            self._drop_dead()
            if not self._queue:
                if self._stopping:
                    return None
                self._arrival.clear()
                await self._arrival.wait()
                continue
            selection = self._select()
            remaining = self._queue[0].arrived + self.config.max_wait_ms / 1000 - time.monotonic()
            if selection.full or remaining <= 0 or self._stopping:
                break
            self._arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), remaining)
        taken = set(selection.indices)
        batch = [self._queue[i] for i in sorted(taken)]
        self._queue = [p for i, p in enumerate(self._queue) if i not in taken]
        self._queued_tokens -= sum(p.tokens for p in batch)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            self._observer.on_queue(len(self._queue), self._queued_tokens)
            started = time.monotonic()
            for p in batch:
                p.started = started
                self._observer.on_queue_wait(started - p.arrived)
            items = [p.item for p in batch]
            try:
                results: Sequence[Any] = await loop.run_in_executor(self._executor, self._process, items)
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} items returned {len(results)} results")
            except Exception as exc:  # one failure reaches every caller of the batch
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            finally:
                elapsed = time.monotonic() - started
                for p in batch:
                    p.inference_s = elapsed
            real = sum(p.tokens for p in batch)
            padded = max(p.tokens for p in batch) * len(batch)
            self._observer.on_batch(len(batch), padded, real, elapsed)
            if elapsed > 0:
                rate = padded / elapsed
                self._tokens_per_s = rate if not self._tokens_per_s else 0.8 * self._tokens_per_s + 0.2 * rate
            for p, result in zip(batch, results, strict=True):
                if not p.future.done():  # a caller may have gone away meanwhile; set once
                    p.future.set_result(result)
