-- Attachments over 256 KiB (decoded) are kept in R2, one object per message under this key, so a row
-- stays small however large the mail; NULL when they are in attachments_json (or there are none).
ALTER TABLE messages ADD COLUMN attachments_key TEXT;
