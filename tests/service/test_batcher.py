"""Each batching rule of design §4, with timing pinned by events (no sleeps in the assertions)."""

from __future__ import annotations

import asyncio
import threading
import time
from unittest.mock import ANY

import pytest

from service.batcher import BatchConfig, Batcher
from service.errors import DeadlineExceeded, Overloaded, PayloadTooLarge, ShuttingDown

FOREVER_MS = 60_000.0


class Runner:
    """process() for the batcher: records every batch; can be held at a gate to build a queue."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.short = False
        self.loop = asyncio.get_running_loop()
        self.started = asyncio.Event()

    def __call__(self, items: list[str]) -> list[str]:
        self.loop.call_soon_threadsafe(self.started.set)
        self.gate.wait(10)
        self.batches.append(list(items))
        if self.fail is not None:
            raise self.fail
        out = [f"done:{x}" for x in items]
        return out[:-1] if self.short else out

    async def hold(self, batcher: Batcher) -> asyncio.Task:
        """Occupy the runtime with one blocked batch so later submissions queue up."""
        self.gate.clear()
        self.started.clear()
        task = asyncio.create_task(batcher.submit("blocker", 1))
        await self.started.wait()
        return task


def make(runner: Runner, **kw) -> Batcher:
    config = BatchConfig(**{"max_wait_ms": FOREVER_MS, "max_batch_size": 4, "max_batch_tokens": 1000, **kw})
    batcher = Batcher(runner, config, name="t")
    batcher.start()
    return batcher


async def settle() -> None:
    """Let every ready task run (the batcher loop included) without waiting on the clock."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_batch_closes_at_max_items_without_waiting():
    runner = Runner()
    batcher = make(runner, max_batch_size=3)
    first = [asyncio.create_task(batcher.submit(f"x{i}", 5)) for i in range(2)]
    await settle()
    assert runner.batches == []  # 2 of 3: the (one-minute) window is still open
    last = asyncio.create_task(batcher.submit("x2", 5))
    results = await asyncio.gather(*first, last)
    assert results == ["done:x0", "done:x1", "done:x2"]
    assert runner.batches == [["x0", "x1", "x2"]]
    await batcher.stop()


async def test_batch_closes_when_padded_tokens_would_pass_budget():
    runner = Runner()
    batcher = make(runner, max_batch_tokens=100, max_batch_size=32)
    # 40 + 40 = 80 padded tokens fit; a third 40 (120) would not, so the batch closes at once.
    tasks = [asyncio.create_task(batcher.submit(f"x{i}", 40)) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(*tasks[:2]), 5)
    assert runner.batches[0] == ["x0", "x1"]
    await batcher.stop()  # the third runs on drain
    assert runner.batches[1] == ["x2"]


async def test_padded_cost_counts_the_longest_item():
    runner = Runner()
    batcher = make(runner, max_batch_tokens=100, max_batch_size=32, max_wait_ms=0)
    blocker = await runner.hold(batcher)
    # 10 + 60: padded cost 2 × 60 = 120 > 100, so they cannot share a batch.
    tasks = [
        asyncio.create_task(batcher.submit("short", 10)),
        asyncio.create_task(batcher.submit("long", 60)),
    ]
    await settle()
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(blocker, *tasks), 5)
    assert runner.batches[1:] == [["short"], ["long"]]
    await batcher.stop()


async def test_window_counts_from_first_item_not_last():
    runner = Runner()
    batcher = make(runner, max_wait_ms=150, max_batch_size=32)
    t0 = time.monotonic()
    first = asyncio.create_task(batcher.submit("a", 3))
    # Keep items arriving inside the window: it must not restart with each one.
    later = []
    while not runner.started.is_set():
        later.append(asyncio.create_task(batcher.submit(f"b{len(later)}", 3)))
        await asyncio.wait([asyncio.ensure_future(runner.started.wait())], timeout=0.02)
    closed_after = time.monotonic() - t0
    await asyncio.gather(first, *later)
    assert 0.14 <= closed_after < 0.6
    assert runner.batches[0][0] == "a" and len(runner.batches[0]) >= 5
    await batcher.stop()


async def test_length_grouping_within_lookahead():
    runner = Runner()
    # No window: what matters is how the queue built up behind the busy runtime is split.
    batcher = make(runner, max_batch_size=3, max_wait_ms=0)
    blocker = await runner.hold(batcher)
    lengths = {"s1": 10, "L1": 50, "s2": 11, "L2": 52, "s3": 12, "L3": 51}
    tasks = [asyncio.create_task(batcher.submit(name, n)) for name, n in lengths.items()]
    await settle()
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(blocker, *tasks), 5)
    assert [sorted(b) for b in runner.batches[1:]] == [["s1", "s2", "s3"], ["L1", "L2", "L3"]]
    await batcher.stop()


async def test_aging_oldest_item_always_in_next_batch():
    runner = Runner()
    batcher = make(runner, max_batch_size=2, max_wait_ms=0)
    blocker = await runner.hold(batcher)
    # A long item first, then a stream of short ones that would group better with each other.
    tasks = [asyncio.create_task(batcher.submit("old-long", 90))]
    tasks += [asyncio.create_task(batcher.submit(f"s{i}", 5)) for i in range(6)]
    await settle()
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(blocker, *tasks), 5)
    assert "old-long" in runner.batches[1]
    await batcher.stop()


async def test_queue_budget_rejects_at_once_with_retry_after():
    runner = Runner()
    batcher = make(runner, max_queue_tokens=50, max_wait_ms=0)
    blocker = await runner.hold(batcher)
    accepted = asyncio.create_task(batcher.submit("a", 30))
    await settle()
    with pytest.raises(Overloaded) as info:
        await batcher.submit("b", 30)
    assert info.value.retry_after_s >= 1 and info.value.headers()["retry-after"].isdigit()
    runner.gate.set()
    assert await accepted == "done:a"
    assert await batcher.submit("c", 30) == "done:c"  # usable again once the queue drained
    await blocker
    await batcher.stop()


async def test_a_request_larger_than_the_whole_budget_is_413_even_when_idle():
    runner = Runner()
    gauge = QueueGauge()
    batcher = Batcher(runner, BatchConfig(max_wait_ms=0, max_queue_tokens=100), gauge, name="t")
    batcher.start()
    with pytest.raises(PayloadTooLarge, match="150 tokens.*100"):
        await batcher.submit_many(["big", "bigger"], [75, 75])
    assert gauge.rejected == ["too_long"] and runner.batches == []
    assert await batcher.submit_many(["a", "b"], [50, 50]) == (["done:a", "done:b"], ANY)  # exactly fits
    await batcher.stop()


async def test_deadline_gives_504_and_item_never_runs():
    runner = Runner()
    batcher = make(runner, max_wait_ms=0)
    blocker = await runner.hold(batcher)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit("late", 3, timeout_s=0.05)
    runner.gate.set()
    await blocker
    assert await batcher.submit("next", 3) == "done:next"
    assert all("late" not in b for b in runner.batches)
    await batcher.stop()


class QueueGauge:
    """An observer keeping the last queue figures the batcher reported (the metrics' gauges)."""

    def __init__(self) -> None:
        self.items = self.tokens = None
        self.rejected: list[str] = []

    def on_batch(self, *args) -> None: ...
    def on_queue_wait(self, seconds) -> None: ...

    def on_queue(self, items, tokens) -> None:
        self.items, self.tokens = items, tokens

    def on_rejected(self, reason) -> None:
        self.rejected.append(reason)


async def test_a_504_releases_its_queued_tokens_and_the_gauges_at_once():
    """Tokens of a request answered 504 stop counting then, not when the lane next looks: a
    request that fits the budget is admitted right after, and the gauges read 0 when idle."""
    runner = Runner()
    gauge = QueueGauge()
    config = BatchConfig(max_wait_ms=0, max_batch_size=4, max_batch_tokens=1000, max_queue_tokens=10)
    batcher = Batcher(runner, config, gauge, name="t")
    batcher.start()
    blocker = await runner.hold(batcher)
    with pytest.raises(DeadlineExceeded):
        await batcher.submit("late", 8, timeout_s=0.05)
    assert (batcher.queued_items, batcher.queued_tokens, gauge.items, gauge.tokens) == (0, 0, 0, 0)
    batcher.check_room()
    admitted = asyncio.create_task(batcher.submit("next", 8))
    await settle()
    runner.gate.set()
    assert await admitted == "done:next" and gauge.rejected == ["deadline"]
    await blocker
    await batcher.stop()


async def test_a_failed_item_releases_its_queued_siblings():
    runner = Runner()
    gauge = QueueGauge()
    config = BatchConfig(max_wait_ms=0, max_batch_size=1, max_batch_tokens=1000, max_queue_tokens=100)
    batcher = Batcher(runner, config, gauge, name="t")
    batcher.start()
    runner.fail = ValueError("boom")
    runner.gate.clear()
    runner.started.clear()
    request = asyncio.create_task(batcher.submit_many(["a", "b", "c"], [5, 5, 5]))
    await runner.started.wait()  # "a" is running, "b" and "c" wait
    runner.gate.set()
    with pytest.raises(ValueError):
        await request
    # (The lane may already have taken "b" when "a" failed; what is still queued leaves now.)
    assert (batcher.queued_tokens, gauge.tokens) == (0, 0)
    await batcher.stop()


async def test_a_timeout_error_from_the_runtime_is_not_a_deadline():
    def process(items):
        raise TimeoutError("the device call timed out")  # a runtime's own timeout: a 500, not a 504

    gauge = QueueGauge()
    batcher = Batcher(process, BatchConfig(max_wait_ms=0), gauge, name="t")
    batcher.start()
    with pytest.raises(TimeoutError, match="device call") as raised:
        await batcher.submit("x", 3, timeout_s=30)
    assert not isinstance(raised.value, DeadlineExceeded) and gauge.rejected == []
    await batcher.stop()


async def test_cancelled_caller_is_dropped_before_running():
    runner = Runner()
    batcher = make(runner, max_wait_ms=0)
    blocker = await runner.hold(batcher)
    gone = asyncio.create_task(batcher.submit_many(["gone1", "gone2"], [3, 3]))
    stays = asyncio.create_task(batcher.submit("stays", 3))
    await settle()
    gone.cancel()
    await settle()
    runner.gate.set()
    assert await stays == "done:stays"
    await blocker
    assert not any(x.startswith("gone") for b in runner.batches for x in b)
    await batcher.stop()


async def test_exception_reaches_every_caller_of_the_batch():
    runner = Runner()
    batcher = make(runner, max_batch_size=3)
    runner.fail = ValueError("boom")
    results = await asyncio.gather(*(batcher.submit(f"x{i}", 2) for i in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError] * 3 and len(runner.batches) == 1
    runner.fail = None
    batcher.config = BatchConfig(max_wait_ms=0)
    assert await asyncio.wait_for(batcher.submit("after", 2), 5) == "done:after"  # the loop survived
    await batcher.stop()


async def test_result_count_is_checked():
    runner = Runner()
    batcher = make(runner, max_batch_size=2)
    runner.short = True
    results = await asyncio.gather(batcher.submit("a", 2), batcher.submit("b", 2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "returned 1 results" in str(r) for r in results)
    await batcher.stop()


async def test_result_set_once_when_caller_leaves_mid_batch():
    runner = Runner()
    batcher = make(runner, max_wait_ms=0)
    runner.gate.clear()
    leaving = asyncio.create_task(batcher.submit("leaving", 2))
    await runner.started.wait()
    leaving.cancel()  # its future is cancelled while the batch runs; setting it must not crash the loop
    runner.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await batcher.submit("next", 2) == "done:next"
    await batcher.stop()


async def test_stop_drains_accepted_work_and_refuses_new():
    runner = Runner()
    batcher = make(runner, max_batch_size=32)  # one-minute window: only stop() can close the batch
    tasks = [asyncio.create_task(batcher.submit(f"x{i}", 2)) for i in range(5)]
    await settle()
    assert runner.batches == []
    await batcher.stop()
    assert await asyncio.gather(*tasks) == [f"done:x{i}" for i in range(5)]
    with pytest.raises(ShuttingDown):
        await batcher.submit("late", 2)


async def test_lanes_run_batches_side_by_side():
    runner = Runner()
    batcher = make(runner, max_wait_ms=0, lanes=2)
    blocker = await runner.hold(batcher)  # one lane is stuck at the gate...
    runner.gate.clear()
    runner.started.clear()
    second = asyncio.create_task(batcher.submit("second", 3))
    await asyncio.wait_for(runner.started.wait(), 5)  # ...and the other lane still starts a batch
    runner.gate.set()
    assert await asyncio.wait_for(second, 5) == "done:second"
    await blocker
    await batcher.stop()


async def test_one_lane_waits_for_the_running_batch():
    runner = Runner()
    batcher = make(runner, max_wait_ms=0, lanes=1)
    blocker = await runner.hold(batcher)
    runner.started.clear()
    queued = asyncio.create_task(batcher.submit("queued", 3))
    await settle()
    await asyncio.sleep(0.05)
    assert not runner.started.is_set() and batcher.queued_items == 1
    runner.gate.set()
    assert await asyncio.wait_for(queued, 5) == "done:queued"
    await blocker
    await batcher.stop()


async def test_shared_executor_bounds_runs_across_batchers():
    from concurrent.futures import ThreadPoolExecutor

    active, peak = 0, 0
    lock = threading.Lock()

    def slow(items):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return items

    pool = ThreadPoolExecutor(max_workers=2)
    config = BatchConfig(max_wait_ms=0, max_batch_size=1, lanes=2)
    batchers = [Batcher(slow, config, name=f"m{i}", executor=pool) for i in range(3)]
    for b in batchers:
        b.start()
    results = await asyncio.gather(*(b.submit(f"{i}", 1) for b in batchers for i in range(4)))
    assert sorted(results) == sorted(f"{i}" for _ in batchers for i in range(4))
    assert peak == 2  # 3 models x 2 lanes wanted 6 runs at once; the pool allows 2
    for b in batchers:
        await b.stop()
    pool.submit(lambda: None).result()  # the shared pool is still usable: stop() left it alone
    pool.shutdown()


async def test_padding_allowance_splits_far_lengths():
    runner = Runner()
    batcher = make(runner, max_batch_size=8, max_wait_ms=0, pad_allowance=4)
    blocker = await runner.hold(batcher)
    lengths = {"a": 10, "b": 12, "c": 30, "d": 11, "e": 31}
    tasks = [asyncio.create_task(batcher.submit(name, n)) for name, n in lengths.items()]
    await settle()
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(blocker, *tasks), 5)
    # a(10), d(11), b(12) add 1 + 2 padding tokens together; c(30) would add 18 per item.
    assert [sorted(b) for b in runner.batches[1:]] == [["a", "b", "d"], ["c", "e"]]
    await batcher.stop()


async def test_padding_counts_growth_of_the_longest_for_every_item():
    runner = Runner()
    batcher = make(runner, max_batch_size=8, max_wait_ms=0, pad_allowance=5)
    blocker = await runner.hold(batcher)
    # Three items of 10 tokens, then one of 12: it would add 2 padding tokens to each of the
    # three (6 > 5), so it waits for its own batch, though it is only 2 tokens longer.
    tasks = [asyncio.create_task(batcher.submit(f"x{i}", 10)) for i in range(3)]
    tasks.append(asyncio.create_task(batcher.submit("y", 12)))
    await settle()
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(blocker, *tasks), 5)
    assert [sorted(b) for b in runner.batches[1:]] == [["x0", "x1", "x2"], ["y"]]
    await batcher.stop()
