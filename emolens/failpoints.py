"""Named places where a test may make a process die on purpose, to prove what survives.

A failpoint does nothing unless ``EMOLENS_FAILPOINT`` names it, as ``NAME`` or ``NAME:N``
(die on its N-th pass; default 1). Then the process ends at once with ``os._exit`` — no
cleanup, no flush, as ``kill -9`` would — at exactly that line, which no signal sent from
outside can hit reliably (e.g. between the aggregator's database commit and its offset
commit).

>>> hit("aggregator.after_db_commit")  # not armed: nothing happens
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
_passes: dict[str, int] = {}


def hit(name: str) -> None:
    armed = os.environ.get("EMOLENS_FAILPOINT", "")
    if not armed:
        return
    target, _, nth = armed.partition(":")
    if target != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(nth or 1):
        # logs.event's record, built here: failpoints sits beside logs, below everything that uses it
        fields = {"name": name, "pass": _passes[name]}
        log.critical(
            "event=failpoint name=%s pass=%d", name, _passes[name], extra={"event": "failpoint", "fields": fields}
        )
        logging.shutdown()
        os._exit(137)
