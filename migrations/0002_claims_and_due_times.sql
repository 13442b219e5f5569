-- Claims, due times and sweeps: a row records when it next needs attention, so a lost queue job, an
-- expired claim or a dead-lettered job can always be found again; "sending" marks a row claimed by a
-- delivery attempt until next_attempt_at (the claim's expiry). send_at becomes scheduled_at.
-- SQLite cannot change a CHECK constraint in place, so both tables are rebuilt, history kept. The new
-- events table points at messages_new, which the rename then turns into "messages": dropping the old
-- messages table thus never cascades into the copied history.

CREATE TABLE messages_new (
  id              TEXT PRIMARY KEY,
  status          TEXT NOT NULL CHECK (status IN ('scheduled', 'queued', 'sending', 'retrying', 'sent', 'failed', 'canceled')),
  message_id      TEXT NOT NULL,          -- RFC 5322 Message-ID, fixed at acceptance
  api_key_name    TEXT,                   -- which key sent it (names only, never keys)
  from_json       TEXT NOT NULL,          -- {"name"?, "address"}
  to_json         TEXT NOT NULL,          -- [{"name"?, "address"}, ...]
  cc_json         TEXT NOT NULL DEFAULT '[]',
  bcc_json        TEXT NOT NULL DEFAULT '[]',
  subject         TEXT NOT NULL,
  text_body       TEXT,
  html_body       TEXT,
  template        TEXT,
  tags_json       TEXT NOT NULL DEFAULT '[]',
  attempts        INTEGER NOT NULL DEFAULT 0,  -- claims so far; a claim is one delivery attempt
  last_error      TEXT,
  created_at      TEXT NOT NULL,
  updated_at      TEXT NOT NULL,
  scheduled_at    TEXT,
  sent_at         TEXT,
  -- While pending: when the next attempt is due; while "sending": when the claim expires.
  next_attempt_at TEXT NOT NULL,
  -- When the sweeper last put this row back on the queue.
  swept_at        TEXT
);

INSERT INTO messages_new (id, status, message_id, api_key_name, from_json, to_json, cc_json, bcc_json, subject,
                          text_body, html_body, template, tags_json, attempts, last_error, created_at, updated_at,
                          scheduled_at, sent_at, next_attempt_at)
  SELECT id, status, message_id, api_key_name, from_json, to_json, cc_json, bcc_json, subject,
         text_body, html_body, template, tags_json, attempts, last_error, created_at, updated_at,
         send_at, sent_at, COALESCE(send_at, updated_at)
  FROM messages;

CREATE TABLE events_new (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id TEXT NOT NULL REFERENCES messages_new (id) ON DELETE CASCADE,
  at         TEXT NOT NULL,
  type       TEXT NOT NULL CHECK (type IN ('accepted', 'sent', 'deferred', 'failed', 'interrupted', 'rescheduled', 'canceled')),
  attempt    INTEGER,
  smtp_code  INTEGER,
  detail     TEXT
);

-- The dead-letter consumer used to write "dead_lettered" when it failed a message; that is a "failed" event.
INSERT INTO events_new (seq, message_id, at, type, attempt, smtp_code, detail)
  SELECT seq, message_id, at, CASE type WHEN 'dead_lettered' THEN 'failed' ELSE type END, attempt, smtp_code, detail
  FROM events;

DROP TABLE events;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
ALTER TABLE events_new RENAME TO events;

-- The sweeper's and the claim's lookups: pending rows by due time.
CREATE INDEX messages_due ON messages (status, next_attempt_at);
CREATE INDEX events_message ON events (message_id, at, seq);
