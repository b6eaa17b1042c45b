"""Simulated shoppers: the "real users" whose traffic the demo records.

Sessions arrive as a Poisson process (an open model: arrivals do not wait
for the service); each session walks a Markov chain over the shop's pages
with log-normal think times, over real HTTP, with its own ``X-Session-Id``.
The chain, the think times and the arrival rate are known, so what perfsdk
learns from the recorded spans can be checked against the truth.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from perfsdk.demo.shop import SESSION_HEADER, WORDS

__all__ = ["CHAIN", "START", "Shoppers", "TrafficReport"]

#: Where sessions start, and the page-to-page chain ("$end" ends a session).
START = {"home": 0.5, "search": 0.3, "product": 0.2}
CHAIN = {
    "home": {"search": 0.5, "product": 0.4, "$end": 0.1},
    "search": {"product": 0.6, "search": 0.25, "$end": 0.15},
    "product": {"cart": 0.3, "product": 0.3, "search": 0.2, "$end": 0.2},
    "cart": {"checkout": 0.5, "product": 0.3, "$end": 0.2},
    "checkout": {"$end": 1.0},
}


@dataclass
class TrafficReport:
    """What the shoppers did (the ground truth the demo checks what it learned against)."""

    sessions: int = 0
    requests: int = 0
    errors: int = 0
    late_s: float = 0.0  # the most an arrival started late (all workers busy)
    pages: dict[str, int] = field(default_factory=dict)


class Shoppers:
    """Drive ``base_url`` with ``rate`` new sessions a second for ``seconds``.

    Parameters
    ----------
    think_median_s, think_sigma
        Think time between pages: log-normal with this median and shape.
    products
        Product ids are drawn from 1..products, Zipf-like (a few popular items).
    workers
        Sessions that may run at once (threads).
    """

    def __init__(self, base_url: str, *, rate: float = 5.0, seconds: float = 30.0, think_median_s: float = 0.2,
                 think_sigma: float = 0.6, products: int = 2000, workers: int = 64, seed: int = 0) -> None:
        self.base_url = base_url.rstrip("/")
        self.rate, self.seconds = float(rate), float(seconds)
        self.think_median_s, self.think_sigma = think_median_s, think_sigma
        self.products, self.workers = products, workers
        self.rng = random.Random(seed)
        self.report = TrafficReport()
        self._lock = threading.Lock()
        weights = [1.0 / (k ** 1.1) for k in range(1, products + 1)]
        self._product_weights = weights

    def run(self) -> TrafficReport:
        """Run to the end (arrivals stop after ``seconds``; sessions under way finish)."""
        arrivals, t = [], 0.0
        while True:
            t += self.rng.expovariate(self.rate)
            if t >= self.seconds:
                break
            arrivals.append((t, self.rng.getrandbits(64)))
        started = time.monotonic()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="shopper") as pool:
            futures = [pool.submit(self._session, started + at, seed) for at, seed in arrivals]
            for future in futures:
                future.result()
        return self.report

    def _session(self, due: float, seed: int) -> None:
        late = time.monotonic() - due
        if late < 0:
            time.sleep(-late)
        rng = random.Random(seed)
        session = uuid.UUID(int=seed << 64 | seed).hex
        page = _pick(rng, START)
        with self._lock:
            self.report.sessions += 1
            self.report.late_s = max(self.report.late_s, late)
        while page != "$end":
            self._visit(page, session, rng)
            page = _pick(rng, CHAIN[page])
            if page != "$end":
                time.sleep(rng.lognormvariate(0.0, self.think_sigma) * self.think_median_s)

    def _visit(self, page: str, session: str, rng: random.Random) -> None:
        pid = rng.choices(range(1, self.products + 1), self._product_weights)[0]
        method, path = {  # every value is in the path or the query: a traffic model can learn it
            "home": ("GET", "/"),
            "search": ("GET", f"/search?q={rng.choice(WORDS)}&page={rng.choice((0, 0, 0, 1, 2))}"),
            "product": ("GET", f"/products/{pid}"),
            "cart": ("POST", f"/cart/{pid}?quantity={rng.randint(1, 3)}"),
            "checkout": ("POST", "/checkout"),
        }[page]
        data = b"" if method == "POST" else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={SESSION_HEADER: session})
        failed = False
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except (urllib.error.URLError, OSError):
            failed = True
        with self._lock:
            self.report.requests += 1
            self.report.errors += failed
            self.report.pages[page] = self.report.pages.get(page, 0) + 1


def _pick(rng: random.Random, row: dict[str, float]) -> str:
    names = list(row)
    return rng.choices(names, [row[n] for n in names])[0]

