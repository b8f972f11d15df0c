"""SQL for writing a batch into the archive database.

Batches travel as one JSON parameter per table, expanded in SQL (the rows with
jsonb_array_elements, the rest with jsonb_to_recordset): a single statement per
table, no temporary tables (catalog churn at thousands of batches) and no
server-side prepared statements (transaction-mode poolers). Lists of ids go
as binary text[] parameters (%(name)b): no quoting to work out per element.

No statement needs another's result on the client: a batch's statements go to the
server in one round trip (archive/batches.py), so whatever one statement must know
of an earlier one's effect it reads back in SQL (the transaction sees its own writes).
"""
from __future__ import annotations

# Index plans for this transaction whatever the statistics say. While a first
# backfill grows the archive from empty, autovacuum's statistics lag far behind the
# table, and the planner then scans all of archived_messages for every batch's
# redactions and edits (bench/README.md has the figures); every statement here is
# an index lookup by its nature. SET LOCAL-like, so it works through a
# transaction-mode pooler and leaves nothing behind.
INDEX_PLANS = "SELECT set_config('enable_seqscan', 'off', true)"

ROW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "text"), ("room_id", "text"), ("sender", "text"), ("timestamp", "bigint"),
    ("message_type", "text"), ("content", "jsonb"), ("thread_id", "text"), ("reply_to_event_id", "text"),
    ("event_type", "text"), ("state_key", "text"), ("room_name", "text"), ("sender_display_name", "text"),
    ("whatsapp_chat_id", "text"), ("whatsapp_message_id", "text"), ("whatsapp_sender_id", "text"),
    ("sender_phone", "text"), ("stream_ordering", "bigint"), ("topological_ordering", "bigint"),
    ("event", "jsonb"), ("event_raw", "text"), ("archive_problem", "text"), ("encrypted", "boolean"),
    ("relation_type", "text"), ("relates_to_event_id", "text"), ("reaction_key", "text"), ("redacts", "text"),
    ("redaction_recheck", "boolean"), ("original_content", "jsonb"),
)
_NAMES = ", ".join(f'"{name}"' for name, _ in ROW_COLUMNS)

# The rows' payload is a JSON array of arrays, each row's values in ROW_COLUMNS order
# (archive/batches.py): the server parses every byte of it, and key names would be
# a quarter of the bytes. JSON null is SQL NULL, as jsonb_to_recordset has it.
# `content` is null when it is the event's own content, which then travels once,
# inside `event` (the column itself is NOT NULL).
CONTENT_FROM_EVENT = ("content", "event")
_EVENT_AT = [name for name, _ in ROW_COLUMNS].index(CONTENT_FROM_EVENT[1])


def _column_value(index: int, name: str, type_: str) -> str:
    value = {"jsonb": f"NULLIF(a -> {index}, 'null'::jsonb)", "text": f"a ->> {index}"}.get(
        type_, f"(a ->> {index})::{type_}")
    if name == CONTENT_FROM_EVENT[0]:
        value = f"COALESCE({value}, a -> {_EVENT_AT} -> 'content')"
    return f'{value} AS "{name}"'


_VALUES = ", ".join(_column_value(i, name, type_) for i, (name, type_) in enumerate(ROW_COLUMNS))

# A row is stored once; the one exception is ciphertext whose plaintext arrives later
# (bot mode: a late key, `keys import`): it is decrypted in place, `event` keeps the
# ciphertext.
_DECRYPTED = ("content", "message_type", "event_type", "thread_id", "reply_to_event_id", "relation_type",
              "relates_to_event_id", "reaction_key", "original_content")
INSERT_ROWS = f"""
INSERT INTO archived_messages ({_NAMES}, decrypted_at)
SELECT {_NAMES}, CASE WHEN r.encrypted AND r.event_type <> 'm.room.encrypted' THEN NOW() END
  FROM (SELECT {_VALUES} FROM jsonb_array_elements(%t) AS a) AS r
ON CONFLICT (event_id) DO UPDATE
   SET {", ".join(f'"{c}" = EXCLUDED."{c}"' for c in _DECRYPTED)}, decrypted_at = NOW(), updated_at = NOW()
 WHERE archived_messages.event_type = 'm.room.encrypted' AND EXCLUDED.event_type <> 'm.room.encrypted'
"""

# Ciphertext still waiting for its key, and ciphertext that no longer waits.
PENDING_DECRYPTION = """
INSERT INTO pending_decryption (event_id, room_id, session_id, reason, withheld_code)
SELECT p.event_id, p.room_id, p.session_id, p.reason, p.withheld_code
  FROM jsonb_to_recordset(%s::jsonb) AS p(event_id text, room_id text, session_id text, reason text,
                                         withheld_code text)
ON CONFLICT (event_id) DO UPDATE
   SET reason = EXCLUDED.reason, withheld_code = EXCLUDED.withheld_code, updated_at = NOW()
"""
DECRYPTED_NOW = "DELETE FROM pending_decryption WHERE event_id = ANY(%(ids)b)"

INSERT_MEDIA_JOBS = """
INSERT INTO media_jobs (event_id, media_kind, matrix_url, encrypted_file, media_type,
                        original_filename, mime_type, declared_size)
SELECT j.event_id, j.kind, j.matrix_url, j.encrypted_file, j.media_type,
       j.original_filename, j.mime_type, j.declared_size
  FROM jsonb_to_recordset(%s::jsonb) AS j(event_id text, kind text, matrix_url text, encrypted_file jsonb,
       media_type text, original_filename text, mime_type text, declared_size bigint)
ON CONFLICT (event_id, media_kind, matrix_url) DO NOTHING
"""

# Redactions archived in this batch (redactions: their ids), and earlier-archived
# redactions whose target arrives in this batch (ids: all of the batch's; a
# redaction can come before its target).
APPLY_REDACTIONS = """
WITH r AS (
  SELECT red.event_id AS redaction_id, red.redacts AS target, red.room_id, red.sender,
         red.timestamp, red.content ->> 'reason' AS reason, red.redaction_recheck
    FROM archived_messages red
   WHERE red.event_type = 'm.room.redaction' AND red.redacts IS NOT NULL
     AND (red.event_id = ANY(%(redactions)b) OR red.redacts = ANY(%(ids)b))
)
UPDATE archived_messages t
   SET redacted = TRUE, redacted_at = mxarchiver_ms_to_timestamptz(r.timestamp), redacted_by = r.sender,
       redaction_reason = r.reason, redaction_event_id = r.redaction_id, updated_at = NOW()
  FROM r
 WHERE t.event_id = r.target AND t.room_id = r.room_id AND t.redacted IS NOT TRUE
   AND t.event_type IS DISTINCT FROM 'm.room.create'
   -- Synapse applies a redaction it could not authorise by power level only when
   -- it comes from the original sender's server (events_worker _maybe_redact_event_row).
   AND (r.redaction_recheck IS NOT TRUE
        OR substr(r.sender, strpos(r.sender, ':') + 1) = substr(t.sender, strpos(t.sender, ':') + 1))
RETURNING t.event_id, t.relation_type, t.relates_to_event_id
"""

# redaction_policy purge: clear the content of the redacted events this batch holds or
# redacts, and of their valid edits (same sender and room); anyone else's event is
# left alone. Clearing again what is clear already changes nothing. The uploaded
# objects of purged events are deleted by the uploader; others are dropped.
PURGE_REDACTED = """
WITH targets AS (
  SELECT t.event_id, t.sender, t.room_id
    FROM (SELECT DISTINCT unnest(%(ids)b::text[] || %(redacts)b::text[]) AS event_id) i
    JOIN archived_messages t ON t.event_id = i.event_id
   WHERE t.redacted IS TRUE
), purged AS (
  UPDATE archived_messages m
     SET content = '{}'::jsonb, event = CASE WHEN m.event IS NULL THEN NULL ELSE jsonb_set(m.event, '{content}', '{}'::jsonb) END,
         event_raw = NULL, original_content = NULL, updated_at = NOW()
    FROM targets t
   WHERE m.event_id = t.event_id
      OR (m.relation_type = 'm.replace' AND m.relates_to_event_id = t.event_id
          AND m.sender = t.sender AND m.room_id = t.room_id)
  RETURNING m.event_id
)
UPDATE media_jobs
   SET state = CASE WHEN state = 'done' THEN 'purge' ELSE 'purged' END,
       next_attempt_at = NOW(), updated_at = NOW()
 WHERE event_id IN (SELECT event_id FROM purged) AND state IN ('pending', 'done', 'dead', 'refused')
"""

# The original shows its latest valid edit (same sender, not redacted, newest by
# origin_server_ts then event id); with no valid edit left it shows its own
# content again. Rows with neither an edit nor edited_at are left untouched.
# Checked: the batch's own events, the originals its edits replace (ids), and the
# originals of earlier-archived edits that its redactions redact (redacts).
APPLY_EDITS = """
UPDATE archived_messages o
   SET content = CASE
         -- a decrypted row's own content is its plaintext, kept in original_content
         WHEN x.new_content IS NULL THEN COALESCE(CASE WHEN o.encrypted THEN o.original_content END,
                                                  o.event -> 'content', o.original_content, o.content)
         WHEN o.event -> 'content' ? 'm.relates_to'
           THEN x.new_content || jsonb_build_object('m.relates_to', o.event -> 'content' -> 'm.relates_to')
         ELSE x.new_content END,
       message_type = CASE WHEN o.event_type = 'm.room.message'
         THEN COALESCE(x.new_content ->> 'msgtype', o.event -> 'content' ->> 'msgtype', o.message_type)
         ELSE o.message_type END,
       edited_at = mxarchiver_ms_to_timestamptz(x.timestamp), updated_at = NOW()
  FROM (
    SELECT t.event_id AS target, l.new_content, l.timestamp
      -- Joined, not "= ANY(array)": a bitmap scan rechecks every row against the
      -- whole array, which costs the square of the batch size.
      FROM (SELECT DISTINCT unnest(%(ids)b::text[] || ARRAY(
              SELECT r.relates_to_event_id FROM archived_messages r
               WHERE r.event_id = ANY(%(redacts)b) AND r.relation_type = 'm.replace')) AS event_id) i
      JOIN archived_messages t ON t.event_id = i.event_id
      -- Only originals that some edit points at: edited_at is never set without one,
      -- so the rest have nothing to show or undo. For most messages this is one probe
      -- of the relations index, not the row's and then that one.
       AND EXISTS (SELECT 1 FROM archived_messages e0
                    WHERE e0.relates_to_event_id = i.event_id AND e0.relation_type = 'm.replace')
      LEFT JOIN LATERAL (
        SELECT e.content -> 'm.new_content' AS new_content, e.timestamp
          FROM archived_messages e
         WHERE e.relates_to_event_id = t.event_id AND e.relation_type = 'm.replace'
           AND e.sender = t.sender AND e.room_id = t.room_id AND e.event_type = t.event_type
           AND e.redacted IS NOT TRUE
           AND jsonb_typeof(e.content -> 'm.new_content') = 'object'
         ORDER BY e.timestamp DESC, e.event_id DESC LIMIT 1) l ON TRUE
     WHERE t.relation_type IS DISTINCT FROM 'm.replace'
       AND t.event_type = 'm.room.message' AND NOT (%(purge)s AND t.redacted IS TRUE)
  ) x
 WHERE o.event_id = x.target AND (x.new_content IS NOT NULL OR o.edited_at IS NOT NULL)
"""

UPSERT_ROOMS = """
INSERT INTO monitored_rooms (room_id, room_name, room_alias, encryption, whatsapp_id, bridge_type,
                             discovered_by, enabled, backfill, history_done)
SELECT r.room_id, r.room_name, r.room_alias, r.encryption, r.whatsapp_id, COALESCE(r.bridge_type, 'matrix'),
       'stream', TRUE, TRUE, TRUE
  FROM jsonb_to_recordset(%s::jsonb) AS r(room_id text, room_name text, room_alias text, encryption text,
                                         whatsapp_id text, bridge_type text)
ON CONFLICT (room_id) DO UPDATE
   SET room_name = COALESCE(EXCLUDED.room_name, monitored_rooms.room_name),
       room_alias = COALESCE(EXCLUDED.room_alias, monitored_rooms.room_alias),
       encryption = COALESCE(EXCLUDED.encryption, monitored_rooms.encryption),
       whatsapp_id = COALESCE(EXCLUDED.whatsapp_id, monitored_rooms.whatsapp_id),
       -- A room once known as a portal stays one: a cached "not a portal" must not erase it.
       bridge_type = CASE WHEN EXCLUDED.whatsapp_id IS NULL AND monitored_rooms.whatsapp_id IS NOT NULL
                          THEN monitored_rooms.bridge_type ELSE EXCLUDED.bridge_type END,
       updated_at = NOW()
 WHERE (monitored_rooms.room_name, monitored_rooms.room_alias, monitored_rooms.encryption,
        monitored_rooms.whatsapp_id, monitored_rooms.bridge_type)
       IS DISTINCT FROM (COALESCE(EXCLUDED.room_name, monitored_rooms.room_name),
                         COALESCE(EXCLUDED.room_alias, monitored_rooms.room_alias),
                         COALESCE(EXCLUDED.encryption, monitored_rooms.encryption),
                         COALESCE(EXCLUDED.whatsapp_id, monitored_rooms.whatsapp_id),
                         CASE WHEN EXCLUDED.whatsapp_id IS NULL AND monitored_rooms.whatsapp_id IS NOT NULL
                              THEN monitored_rooms.bridge_type ELSE EXCLUDED.bridge_type END)
"""

QUARANTINE = """
INSERT INTO quarantined_events (event_id, room_id, stream_ordering, reason, raw_json)
SELECT q.event_id, q.room_id, q.stream_ordering, q.reason, q.raw_json
  FROM jsonb_to_recordset(%s::jsonb) AS q(event_id text, room_id text, stream_ordering bigint, reason text, raw_json text)
ON CONFLICT (event_id) DO UPDATE SET last_seen_at = NOW(), reason = EXCLUDED.reason
"""
