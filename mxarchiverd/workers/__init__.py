"""The pipeline's stages, one module per role; `runner` is the process shell around them."""
from __future__ import annotations

# role -> "module:Class". The supervisor starts one process per role, in this order
# (downstream first would not matter: queues are created before any child starts).
STAGES: dict[str, str] = {
    "poller": "mxarchiverd.workers.poller:Poller",
    "enricher": "mxarchiverd.workers.enricher:Enricher",
    "dbwriter": "mxarchiverd.workers.dbwriter:DbWriter",
    "uploader": "mxarchiverd.workers.uploader:Uploader",
}

# Started only when `metrics.listen` is set (supervisor.run_supervisor adds it).
METRICS_STAGE = ("metrics", "mxarchiverd.workers.metrics:MetricsExporter")

# The stages joined by queues: poller -> enricher -> dbwriter. A crash of any of
# them rebuilds all three queues and restarts all three from the durable cursor.
PIPELINE: tuple[str, ...] = ("poller", "enricher", "dbwriter")

# daemon.ha: the lease keeper runs on every daemon, leader or standby; it is not
# in STAGES because without HA it does not run at all.
LEASE_ROLE = "lease"
LEASE_STAGE = "mxarchiverd.workers.lease_keeper:LeaseKeeper"


def with_lease_keeper(stages: dict[str, str], ha_enabled: bool) -> dict[str, str]:
    """The stage registry, with the lease keeper first when daemon.ha is on."""
    if not ha_enabled or LEASE_ROLE in stages:
        return stages
    return {LEASE_ROLE: LEASE_STAGE, **stages}
