-- The bridge writes its `message` row only after Synapse has stored the event, so
-- a message can be archived before its WhatsApp ids exist. The poller looks them
-- up again for a while; this index finds the rows still waiting.
CREATE INDEX idx_messages_awaiting_whatsapp_ids ON archived_messages(archived_at)
    WHERE whatsapp_chat_id IS NOT NULL AND whatsapp_message_id IS NULL;
