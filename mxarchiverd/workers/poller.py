"""Poller stage: runs the configured source (sources/) and passes its batches on."""
from __future__ import annotations

import time

from mxarchiverd.config import Config
from mxarchiverd.metrics import instruments as metrics
from mxarchiverd.sources import make_source
from mxarchiverd.sources.base import Source, round_delay
from mxarchiverd.workers.stage import Message, SourceStage


class Poller(SourceStage):
    role = "poller"
    source: Source | None = None

    def open(self) -> None:
        self.source = make_source(self.config, self.beat)
        self.source.open(time.monotonic() + self.config.daemon.startup_timeout)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()

    def reconfigure(self, config: Config) -> None:
        super().reconfigure(config)
        assert self.source is not None
        self.source.reconfigure(config)

    def stats(self) -> dict[str, float]:
        return self.source.stats() if self.source is not None else {}

    def produce(self) -> tuple[list[Message], float]:
        assert self.source is not None
        poll = self.source.poll()
        metrics.source_lag(self.source.stats().get("lag", 0.0))
        return list(poll.batches), round_delay(poll, self.config.processing.poll_interval)
