-- An Idempotency-Key used for a batch (POST /v1/emails/batch) answers with all of the batch's ids, in
-- order: they are kept here as a JSON array (message_id holds the first). NULL for a single send.
ALTER TABLE idempotency_keys ADD COLUMN batch_ids_json TEXT;
