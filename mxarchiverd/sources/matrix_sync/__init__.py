"""Bot mode (`source.mode: matrix_sync`): the Matrix client-server side, below the sync stage.

Only `client`, `olm_feed` and `transport` import matrix-nio (the optional `bot` extra); every
other module is pure and importable in DB mode. Importing this package imports
nothing, so `import mxarchiverd.sources.matrix_sync.plan` never pulls nio in.

- session: settings, the saved login (0600 state file), which login to use
- errors: what an answer means (rate limit, outage, logout...), Retry-After
- filters: the /sync filters and their server-side ids
- plan: one /sync answer -> events to archive, gap/history jobs, next cursor
- membership: the bot's own kicks/bans/leaves/invites, and the holes they open
- paging: /messages (client or admin API) to a stop point, resumable
- events: a client-format event -> the pipeline's raw-event dict
- transport, client: nio on a private event loop behind a synchronous facade
- olm_feed: each /sync also given to nio, and sync_forever's key housekeeping
"""
