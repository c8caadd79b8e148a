"""Dynamic micro-batching: grouping, order, limits, failures and draining on close."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sav_router.serving.batcher import BatcherClosed, MicroBatcher


class Recorder:
    """A predict function that records its calls and can be slowed or made to fail."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.fail_on = fail_on
        self.threads: set[str] = set()

    def __call__(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail_on in texts:
            raise RuntimeError("model failed")
        return [text.upper() for text in texts]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_model_calls_and_keep_their_results():
    predict = Recorder(delay=0.02)

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=64, max_wait_ms=5)
        await batcher.start()
        jobs = [[f"r{i}-a", f"r{i}-b"] for i in range(30)]
        results = await asyncio.gather(*(batcher.submit(texts) for texts in jobs))
        await batcher.close()
        return jobs, results, batcher.stats

    jobs, results, stats = run(scenario())
    assert results == [[t.upper() for t in texts] for texts in jobs]
    assert len(predict.calls) < 10 and stats.calls == len(predict.calls) and stats.texts == 60
    assert predict.threads == {"inference_0"}  # never on the event loop


def test_batch_size_is_capped_even_for_one_large_request():
    # Issue 11 item 4: a large request is computed in slices, so it never holds the model for its whole length.
    predict = Recorder(delay=0.01)

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=4, max_wait_ms=5)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(12)), batcher.submit([f"big{i}" for i in range(10)]))
        await batcher.close()
        return results

    results = run(scenario())
    assert max(len(call) for call in predict.calls) <= 4
    assert results[-1] == [f"BIG{i}" for i in range(10)] and results[:12] == [[f"T{i}"] for i in range(12)]


def test_a_large_request_does_not_hold_a_later_small_one_behind_it():
    predict = Recorder(delay=0.005)

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=8, max_wait_ms=0)
        await batcher.start()
        big = asyncio.ensure_future(batcher.submit([f"big{i}" for i in range(400)]))  # 50 calls on its own
        await asyncio.sleep(0.02)
        before = sum(len(call) for call in predict.calls)
        await batcher.submit(["small"])
        texts_when_small_done = sum(len(call) for call in predict.calls) - before
        await big
        await batcher.close()
        return texts_when_small_done

    # the small request shares the next call (or the one after): at most two slices computed while it waits, not the rest of the 400 texts
    assert run(scenario()) <= 24  # at most 3 slices of 8 (one may be starting on the thread as it is submitted)


def test_a_cancelled_large_request_stops_using_the_model():
    predict = Recorder(delay=0.005)

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=4, max_wait_ms=0)
        await batcher.start()
        big = asyncio.ensure_future(batcher.submit([f"big{i}" for i in range(4000)]))
        await asyncio.sleep(0.05)
        big.cancel()  # the client went away
        await asyncio.sleep(0.05)
        after = await batcher.submit(["next"])
        await batcher.close()
        return after

    assert run(scenario()) == ["NEXT"]
    assert sum(len(call) for call in predict.calls) < 200  # far from the 4000 texts it asked for


def test_a_lone_request_waits_at_most_max_wait():
    predict = Recorder()

    async def scenario():
        batcher = MicroBatcher(predict, max_wait_ms=20)
        await batcher.start()
        started = time.perf_counter()
        await batcher.submit(["alone"])
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert run(scenario()) < 0.5
    assert predict.calls == [["alone"]]


def test_a_failed_call_fails_its_requests_only():
    predict = Recorder(delay=0.02, fail_on="boom")

    async def scenario():
        batcher = MicroBatcher(predict, max_wait_ms=10)
        await batcher.start()
        first = await asyncio.gather(batcher.submit(["ok"]), batcher.submit(["boom"]), return_exceptions=True)
        after = await batcher.submit(["later"])
        await batcher.close()
        return first, after

    first, after = run(scenario())
    assert all(isinstance(result, RuntimeError) for result in first)
    assert after == ["LATER"]


def test_close_answers_queued_requests_then_refuses_new_ones():
    predict = Recorder(delay=0.01)

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=2, max_wait_ms=0)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([f"q{i}"])) for i in range(9)]
        await asyncio.sleep(0)  # let them queue
        await batcher.close()
        with pytest.raises(BatcherClosed):
            await batcher.submit(["too late"])
        return [p.result() for p in pending]

    assert run(scenario()) == [[f"Q{i}"] for i in range(9)]


def test_cancelled_requests_are_skipped():
    predict = Recorder(delay=0.05)

    async def scenario():
        batcher = MicroBatcher(predict, max_wait_ms=0)
        await batcher.start()
        busy = asyncio.ensure_future(batcher.submit(["busy"]))
        await asyncio.sleep(0.01)  # the model is now running "busy"
        gone = asyncio.ensure_future(batcher.submit(["gone"]))
        kept = asyncio.ensure_future(batcher.submit(["kept"]))
        await asyncio.sleep(0)
        gone.cancel()
        results = await asyncio.gather(busy, kept)
        await batcher.close()
        return results

    assert run(scenario()) == [["BUSY"], ["KEPT"]]
    assert ["gone"] not in predict.calls and ["kept"] in predict.calls


def test_empty_submit_and_bad_settings():
    async def scenario():
        batcher = MicroBatcher(Recorder())
        await batcher.start()
        result = await batcher.submit([])
        await batcher.close()
        return result

    assert run(scenario()) == []
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch_size=0)


def test_slices_are_counted_in_cost_and_shared_with_a_lone_request():
    # Issue 18, finding 4: a call holds at most max_batch_cost (tokens in the server), not only max_batch_size texts,
    # and a neighbour's lone text gets its share of the very next call.
    predict = Recorder(delay=0.01)

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=64, cost=len, max_batch_cost=100)
        await batcher.start()
        big = asyncio.ensure_future(batcher.submit(["x" * 40] * 10))
        await asyncio.sleep(0.005)  # a call of the big request is running
        started = len(predict.calls)  # calls started so far (the recorder notes a call when it starts)
        small = await batcher.submit(["s"])
        await big
        await batcher.close()
        return small, started

    small, started = run(scenario())
    # the lone text is in the first call that starts after it was submitted
    assert small == ["S"] and "s" in predict.calls[started]
    assert all(sum(map(len, call)) <= 100 for call in predict.calls)
    assert predict.calls[0] == ["x" * 40] * 2  # 80 of 100: a third text would not fit


def test_a_text_over_the_cost_budget_is_still_computed_alone():
    predict = Recorder()

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=8, cost=len, max_batch_cost=5)
        await batcher.start()
        result = await batcher.submit(["long text", "ab", "cd", "efghij"])
        await batcher.close()
        return result

    assert run(scenario()) == ["LONG TEXT", "AB", "CD", "EFGHIJ"]
    assert predict.calls == [["long text"], ["ab", "cd"], ["efghij"]]
