import time


class TokenBucket:
    """Allows `burst` actions at once, refilled at `rate` per second."""

    def __init__(self, *, burst, rate, clock=time.monotonic):
        self.capacity = float(burst)
        self.rate = float(rate)
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    def take(self):
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def give_back(self):
        """Return the token of an action that did not happen after all."""
        self.tokens = min(self.capacity, self.tokens + 1)
