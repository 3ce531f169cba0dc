"""Sampling a source down to a target frame rate by the source's own timestamps.

A live camera's frames do not arrive every 1/fps exactly: network and encoder jitter of 20-30%
of the period is normal. A rule such as "keep a frame when at least 1/fps passed since the last
kept one" then drops every frame that arrives a little early, which loses about 40% of a 5 fps
camera read at 5 fps. :class:`RateSampler` instead lays a grid of slots 1/fps apart from the
first frame and fills each slot once: a frame belongs to the slot nearest its timestamp (half a
period of tolerance either side), and a slot left empty by a late frame may still be filled by
the next one (one slot of credit, never more, so a source that stalls and then bursts does not
get a burst through).

Opening a stream is the one burst that is kept: the decoder reads a few frames ahead to learn
the stream's format and hands them over at once (seen here: three frames of a 5 fps MJPEG
camera within a millisecond). They are frames the camera took before, not frames in excess of
its rate, so every frame within a quarter period of the first after :meth:`RateSampler.reopen`
is kept and the grid starts at the last of them.

>>> sampler = RateSampler(5.0)
>>> [sampler.keep(t) for t in (0.0, 0.17, 0.43, 0.58, 0.83)]  # 5 fps with jitter: all kept
[True, True, True, True, True]
>>> sampler = RateSampler(5.0)
>>> sum(sampler.keep(i / 10) for i in range(101))  # 0-10 s of a 10 fps source: one per 0.2 s slot
51
"""

from __future__ import annotations

import math

# Slots a late source may catch up on: one, so a frame pushed into the next slot by jitter is not
# lost, while a stall followed by a burst is not let through at the source's rate.
CREDIT_SLOTS = 1


class RateSampler:
    """Keeps at most ``fps`` frames a second on average (all frames when ``fps`` is None or 0);
    :meth:`keep` takes each frame's timestamp in seconds, in order."""

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self._t0 = 0.0  # where slot 0 is
        self._filled = 0  # slots 0 .. _filled - 1 hold a kept frame (or were given up as stalled)
        self._burst_until: float | None = None  # the opening burst lasts until then
        self._opening = True

    def reopen(self) -> None:
        """The source was (re)opened: its first frames may come in one burst (module docstring)."""
        self._opening, self._burst_until = True, None

    def keep(self, timestamp: float) -> bool:
        if not self.period:
            return True
        if self._opening:
            if self._burst_until is None:
                self._burst_until = timestamp + self.period / 4
            if timestamp <= self._burst_until:
                self._t0, self._filled = timestamp, 1
                return True
            self._opening = False
        slot = math.floor((timestamp - self._t0) / self.period + 0.5)  # the nearest slot
        self._filled = max(self._filled, slot - CREDIT_SLOTS)
        if slot < self._filled:
            return False
        self._filled += 1
        return True
