-- Idempotency keys (draft-ietf-httpapi-idempotency-key-header), per API key, kept 24 hours. A key is
-- "pending" while its first request is being accepted and "done" once that request answered 202; a
-- replay answers with the message the first request created. fingerprint: SHA-256 of the request body
-- as canonical JSON, so the same key with another body is refused.
CREATE TABLE idempotency_keys (
  api_key_name TEXT NOT NULL,
  key          TEXT NOT NULL,
  fingerprint  TEXT NOT NULL,
  message_id   TEXT NOT NULL,
  state        TEXT NOT NULL CHECK (state IN ('pending', 'done')),
  created_at   TEXT NOT NULL,
  expires_at   TEXT NOT NULL,
  PRIMARY KEY (api_key_name, key)
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
