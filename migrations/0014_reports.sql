-- Reports that came back to a return path (DSNs, complaints, plain bounces), one row per distinct report of
-- a message (its digest: the recipients, actions, statuses and diagnostics it gives), so that the same
-- report received twice changes nothing the second time. Nothing of the report's text is kept here.
CREATE TABLE received_reports (
  message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  digest      TEXT NOT NULL,
  kind        TEXT NOT NULL CHECK (kind IN ('delivery_status', 'complaint', 'undetermined')),
  received_at TEXT NOT NULL,
  PRIMARY KEY (message_id, digest)
) WITHOUT ROWID;
