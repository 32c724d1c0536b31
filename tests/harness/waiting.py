"""Polling a condition until it holds; a test fails when it never does."""

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

T = TypeVar("T")


def _polls(check: Callable[[], T], timeout: float, what: str) -> Iterator[T]:
    """check()'s results, one per poll, up to the first true one; fails the test
    with `what` once `timeout` seconds have passed without it. The caller waits
    between polls, as fits its kind of code."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        yield result
    yield result


def wait_until(
    check: Callable[[], T], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll a condition until it holds; fail the test with `what` otherwise."""
    for result in _polls(check, timeout, what):
        if result:
            return result
        time.sleep(interval)
    raise AssertionError("unreachable: _polls ends with a true result")


async def wait_until_async(
    check: Callable[[], T], timeout: float, what: str, interval: float = 0.05
) -> T:
    """wait_until for async code: the event loop runs between polls."""
    for result in _polls(check, timeout, what):
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError("unreachable: _polls ends with a true result")
