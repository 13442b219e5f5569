-- Delivery events pushed to the teams' endpoints (webhooks), and the emails list.
--
-- A history event can now name one recipient (a recipient refused for good is "bounced", one event each),
-- with the enhanced status code the refusal carried (5.1.1…), from which a bounce's subType is told.
-- Recipients gain the status "bounced"; "failed" stays for a recipient given up on (window over, canceled).
-- Reports that come back later (DSNs, complaints) add "delivered", "complained" and "suppressed", as
-- history types and recipient statuses.
--
-- Webhook events are made by a trigger on events, so one exists exactly when the history row it reports
-- was committed, in the same transaction, for every path that writes history (accept, attempts, cancel,
-- the retry window closing, dead letters): one row per (event, subscribed enabled endpoint of the message's
-- API key). The trigger maps history types to Resend's webhook event types; a history type with no webhook
-- event (accepted for now, interrupted, rescheduled) makes none.

CREATE TABLE events_new (
  message_id    TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  seq           INTEGER NOT NULL,
  at            TEXT NOT NULL,
  type          TEXT NOT NULL CHECK (type IN ('accepted', 'sent', 'deferred', 'bounced', 'delivered', 'complained', 'suppressed', 'failed', 'interrupted', 'rescheduled', 'canceled')),
  attempt       INTEGER,
  smtp_code     INTEGER,
  detail        TEXT,
  recipient     TEXT,   -- the one recipient a per-recipient event (bounced, delivered, complained…) is about
  enhanced_code TEXT,   -- RFC 3463 status of the reply it reports (5.1.1), when the reply had one
  PRIMARY KEY (message_id, seq)
) WITHOUT ROWID;

INSERT INTO events_new (message_id, seq, at, type, attempt, smtp_code, detail)
  SELECT message_id, seq, at, type, attempt, smtp_code, detail FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

CREATE TABLE recipients_new (
  message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  address    TEXT NOT NULL,
  position   INTEGER NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'deferred', 'bounced', 'delivered', 'complained', 'suppressed', 'failed')),
  smtp_code  INTEGER,
  detail     TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (message_id, address)
) WITHOUT ROWID;

-- A recipient the relay refused for good during the session (at RCPT TO, DATA or the end of the message)
-- was "failed"; it is "bounced" now.
INSERT INTO recipients_new (message_id, address, position, status, smtp_code, detail, updated_at)
  SELECT message_id, address, position,
         CASE WHEN status = 'failed' AND smtp_code >= 500 AND (detail LIKE 'RCPT TO%' OR detail LIKE 'DATA %' OR detail LIKE '(end of data)%')
              THEN 'bounced' ELSE status END,
         smtp_code, detail, updated_at
  FROM recipients;
DROP TABLE recipients;
ALTER TABLE recipients_new RENAME TO recipients;

-- GET /v1/emails: a key's own emails, newest first, without reading another key's rows.
CREATE INDEX messages_by_key ON messages (api_key_name, created_at, id);

CREATE TABLE webhooks (
  id                      TEXT PRIMARY KEY,
  api_key_name            TEXT NOT NULL,
  endpoint                TEXT NOT NULL,
  events_json             TEXT NOT NULL,            -- the event types it is subscribed to
  status                  TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
  signing_secret          TEXT NOT NULL,            -- whsec_…
  previous_secret         TEXT,                     -- after a rotation, also signed with until…
  previous_secret_until   TEXT,
  failing_since           TEXT,                     -- the first failed attempt since the last success
  created_at              TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX webhooks_by_key ON webhooks (api_key_name, created_at, id);

CREATE TABLE webhook_events (
  id              TEXT PRIMARY KEY,                 -- webhook-id: the same on every retry and replay
  webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
  -- The history event an email.* event reports (events.message_id, events.seq)…
  message_id      TEXT,
  event_seq       INTEGER,
  -- …or, for an event about no message (suppression.added/removed), its payload as made at the time.
  payload         TEXT,
  type            TEXT NOT NULL,                    -- email.sent, email.bounced, suppression.added…
  created_at      TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('pending', 'attempting', 'success', 'failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  round_start     INTEGER NOT NULL DEFAULT 0,       -- attempts before the last replay: its schedule counts from there
  -- Pending: when the next attempt is due; attempting: when the attempt's claim expires.
  next_attempt_at TEXT,
  -- Gone with its message (and so with the history row it reports; no other history row that makes an event
  -- is ever deleted). Not a foreign key to events: rebuilding that table would cascade into this one.
  FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE,
  CHECK ((message_id IS NOT NULL AND event_seq IS NOT NULL) <> (payload IS NOT NULL))
) WITHOUT ROWID;

CREATE INDEX webhook_events_by_webhook ON webhook_events (webhook_id, created_at, id);
-- The events a history row made (read right after the write that made them), and the foreign key's index, so
-- that deleting a message (a withdrawn one) does not read the whole table.
CREATE INDEX webhook_events_by_event ON webhook_events (message_id, event_seq);
-- The sweep's and the dispatcher's way to what is still to be delivered.
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status IN ('pending', 'attempting');

CREATE TABLE webhook_attempts (
  event_id         TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
  n                INTEGER NOT NULL,
  id               TEXT NOT NULL,                   -- what the attempts list names it by
  http_status_code INTEGER NOT NULL,                -- 0: no answer (timeout, refused connection)
  response         TEXT NOT NULL,                   -- the first 1 KiB of the answer, or why there was none
  sent_at          TEXT NOT NULL,
  PRIMARY KEY (event_id, n)
) WITHOUT ROWID;

CREATE TRIGGER events_to_webhooks AFTER INSERT ON events
BEGIN
  INSERT INTO webhook_events (id, webhook_id, message_id, event_seq, type, created_at, status, next_attempt_at)
  SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||
               substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
         w.id, NEW.message_id, NEW.seq, t.type, NEW.at, 'pending', NEW.at
  FROM (SELECT CASE
          WHEN NEW.type = 'accepted' AND m.status = 'scheduled' THEN 'email.scheduled'
          WHEN NEW.type = 'sent' THEN 'email.sent'
          WHEN NEW.type = 'deferred' THEN 'email.delivery_delayed'
          WHEN NEW.type = 'bounced' THEN 'email.bounced'
          WHEN NEW.type = 'delivered' THEN 'email.delivered'
          WHEN NEW.type = 'complained' THEN 'email.complained'
          WHEN NEW.type = 'suppressed' THEN 'email.suppressed'
          WHEN NEW.type = 'failed' AND m.status = 'failed' THEN 'email.failed'
          WHEN NEW.type = 'canceled' THEN 'email.canceled'
        END AS type, m.api_key_name AS api_key_name
        FROM messages AS m WHERE m.id = NEW.message_id) AS t
  JOIN webhooks AS w ON w.api_key_name = t.api_key_name AND w.status = 'enabled'
  WHERE t.type IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(w.events_json) WHERE value = t.type);
END;
