-- Messages: one row per accepted email, the single source of truth for its status.
-- The payload (addresses as JSON, bodies) lives here; the queue carries only the id.
CREATE TABLE messages (
  id           TEXT PRIMARY KEY,
  status       TEXT NOT NULL CHECK (status IN ('scheduled', 'queued', 'retrying', 'sent', 'failed', 'canceled')),
  message_id   TEXT NOT NULL,            -- RFC 5322 Message-ID, fixed at acceptance
  api_key_name TEXT,                     -- which key sent it (names only, never keys)
  from_json    TEXT NOT NULL,            -- {"name"?, "address"}
  to_json      TEXT NOT NULL,            -- [{"name"?, "address"}, ...]
  cc_json      TEXT NOT NULL DEFAULT '[]',
  bcc_json     TEXT NOT NULL DEFAULT '[]',
  subject      TEXT NOT NULL,
  text_body    TEXT,
  html_body    TEXT,
  template     TEXT,
  tags_json    TEXT NOT NULL DEFAULT '[]',
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT,
  created_at   TEXT NOT NULL,
  updated_at   TEXT NOT NULL,
  send_at      TEXT,
  sent_at      TEXT
);

CREATE INDEX messages_status ON messages (status, updated_at);

-- Events: the per-message history (accepted, each attempt's outcome, dead-lettering).
CREATE TABLE events (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  at         TEXT NOT NULL,
  type       TEXT NOT NULL CHECK (type IN ('accepted', 'sent', 'deferred', 'failed', 'dead_lettered')),
  attempt    INTEGER,
  smtp_code  INTEGER,
  detail     TEXT
);

CREATE INDEX events_message ON events (message_id, at, seq);
