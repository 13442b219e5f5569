-- Each recipient's own outcome: a recipient the relay accepted is never sent the mail again, one refused
-- temporarily is retried on its own, one refused permanently is final. address is the envelope address.
CREATE TABLE recipients (
  message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  address    TEXT NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'deferred', 'failed')),
  smtp_code  INTEGER,
  detail     TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (message_id, address)
);

-- Messages stored before this table: their recipients take the message's state (sent, failed or pending).
INSERT OR IGNORE INTO recipients (message_id, address, status, detail, updated_at)
  SELECT m.id, json_extract(r.value, '$.address'),
         CASE m.status WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'failed' WHEN 'canceled' THEN 'failed' ELSE 'pending' END,
         CASE m.status WHEN 'failed' THEN m.last_error END,
         m.updated_at
  FROM messages AS m, json_each(m.to_json) AS r
  UNION ALL
  SELECT m.id, json_extract(r.value, '$.address'),
         CASE m.status WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'failed' WHEN 'canceled' THEN 'failed' ELSE 'pending' END,
         CASE m.status WHEN 'failed' THEN m.last_error END,
         m.updated_at
  FROM messages AS m, json_each(m.cc_json) AS r;
