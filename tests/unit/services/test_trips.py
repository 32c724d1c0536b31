"""chat/services/trips.py: work waiting for a database thread, in lots."""

import asyncio
import threading

import pytest

from chat.services import trips
from chat.services.trips import Trips, TripsStopped
from tests.harness.waiting import wait_until_async

# Every trip closes stale database connections, as any trip to the database
# thread does; the lots here touch no table.
pytestmark = pytest.mark.django_db


class Lots:
    """A join_lot that records its lots (the first waits until let go) and the
    undo of the queue, which records what it was given."""

    def __init__(self):
        self.lots = []
        self.undone = []
        self.first_may_go = threading.Event()

    async def undo(self, request):
        self.undone.append(request)

    def __call__(self, requests):
        if not self.lots:
            self.first_may_go.wait(5)
        self.lots.append(list(requests))
        return [
            ValueError(request) if request.startswith("bad") else request.upper()
            for request in requests
        ]


async def _queued(queue, count):
    await wait_until_async(
        lambda: len(queue.waiting) == count, 5, f"{count} requests waiting"
    )


async def test_what_comes_during_a_lot_goes_in_the_next_one_together():
    lots = Lots()
    queue = Trips(lots, undo=lots.undo)
    first = asyncio.ensure_future(queue.request("a"))
    await wait_until_async(lambda: queue.running and not queue.waiting, 5, "a lot")
    rest = [asyncio.ensure_future(queue.request(name)) for name in ("b", "c", "d")]
    await _queued(queue, 3)
    lots.first_may_go.set()
    assert await first == "A"
    assert await asyncio.gather(*rest) == ["B", "C", "D"]
    assert lots.lots == [["a"], ["b", "c", "d"]]


async def test_a_failed_join_fails_only_its_caller():
    lots = Lots()
    lots.first_may_go.set()
    queue = Trips(lots, undo=lots.undo)
    good, bad = await asyncio.gather(
        queue.request("good"), queue.request("bad"), return_exceptions=True
    )
    assert good == "GOOD"
    assert isinstance(bad, ValueError)


async def test_a_lot_is_at_most_max_lot_joins(monkeypatch):
    monkeypatch.setattr(trips, "MAX_LOT", 2)
    lots = Lots()
    queue = Trips(lots, undo=lots.undo)
    first = asyncio.ensure_future(queue.request("a"))
    await wait_until_async(lambda: queue.running and not queue.waiting, 5, "a lot")
    rest = [asyncio.ensure_future(queue.request(name)) for name in "bcde"]
    await _queued(queue, 4)
    lots.first_may_go.set()
    await asyncio.gather(first, *rest)
    assert lots.lots == [["a"], ["b", "c"], ["d", "e"]]


async def test_a_join_whose_caller_went_away_is_undone():
    lots = Lots()
    queue = Trips(lots, undo=lots.undo)
    gone = asyncio.ensure_future(queue.request("gone"))
    await wait_until_async(lambda: queue.running and not queue.waiting, 5, "a lot")
    gone.cancel()
    lots.first_may_go.set()
    await wait_until_async(lambda: lots.undone, 5, "the undo")
    assert lots.undone == ["gone"]
    # The queue goes on serving.
    assert await queue.request("next") == "NEXT"


async def test_joins_left_waiting_when_the_queue_stops_are_told():
    lots = Lots()
    queue = Trips(lots, undo=lots.undo)
    first = asyncio.ensure_future(queue.request("a"))
    await wait_until_async(lambda: queue.running and not queue.waiting, 5, "a lot")
    waiting = asyncio.ensure_future(queue.request("b"))
    await _queued(queue, 1)
    queue.running.cancel()
    lots.first_may_go.set()
    with pytest.raises(TripsStopped):
        await waiting
    with pytest.raises(TripsStopped):
        await first
