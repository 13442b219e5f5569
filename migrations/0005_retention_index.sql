-- Retention: the scheduled handler deletes the bodies of settled messages older than RETENTION_DAYS.
-- This index holds only rows that still have a body, so finding the next ones to clear stays cheap as
-- the table grows (cleared rows drop out of it).
CREATE INDEX messages_with_content ON messages (created_at) WHERE text_body IS NOT NULL OR html_body IS NOT NULL;
