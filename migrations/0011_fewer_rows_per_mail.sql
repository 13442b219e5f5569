-- Fewer rows written per mail. D1 bills every index entry a write touches as a row written: an event was
-- three (its row, the events_message index, AUTOINCREMENT's sqlite_sequence row) and a recipient two (its
-- row, the primary key's index). As WITHOUT ROWID tables the primary key is the table itself: one row each.
-- An event's seq now counts per message (1, 2, 3… in the order they were recorded), so no global counter is
-- needed; a recipient's position keeps the order the request gave (to, cc, bcc), which rowid kept before.

CREATE TABLE events_new (
  message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  seq        INTEGER NOT NULL,
  at         TEXT NOT NULL,
  type       TEXT NOT NULL CHECK (type IN ('accepted', 'sent', 'deferred', 'failed', 'interrupted', 'rescheduled', 'canceled')),
  attempt    INTEGER,
  smtp_code  INTEGER,
  detail     TEXT,
  PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;

INSERT INTO events_new (message_id, seq, at, type, attempt, smtp_code, detail)
  SELECT message_id, ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY at, seq), at, type, attempt, smtp_code, detail
  FROM events;

DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

CREATE TABLE recipients_new (
  message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  address    TEXT NOT NULL,
  position   INTEGER NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'deferred', 'failed')),
  smtp_code  INTEGER,
  detail     TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (message_id, address)
) WITHOUT ROWID;

INSERT INTO recipients_new (message_id, address, position, status, smtp_code, detail, updated_at)
  SELECT message_id, address, ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY rowid) - 1, status, smtp_code, detail, updated_at
  FROM recipients;

DROP TABLE recipients;
ALTER TABLE recipients_new RENAME TO recipients;
