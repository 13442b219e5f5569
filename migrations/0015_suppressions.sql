-- Each API key's suppression list (Resend's): addresses its mail is no longer sent to. Added by hand
-- (origin manual), on a permanent refusal that says the address is bad (bounce) and on every complaint
-- (complaint), with the email that caused it as source_id. Addresses are kept in lower case.
CREATE TABLE suppressions (
  api_key_name TEXT NOT NULL,
  email        TEXT NOT NULL,
  id           TEXT NOT NULL UNIQUE,
  origin       TEXT NOT NULL CHECK (origin IN ('bounce', 'complaint', 'manual')),
  source_id    TEXT,
  created_at   TEXT NOT NULL,
  PRIMARY KEY (api_key_name, email)
) WITHOUT ROWID;

-- GET /v1/suppressions: a key's list, newest first.
CREATE INDEX suppressions_by_key ON suppressions (api_key_name, created_at, id);
