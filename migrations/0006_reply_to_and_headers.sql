-- The rest of the message surface: Reply-To addresses and the client's own headers (X-*, List-Unsubscribe,
-- …), stored with the message so every attempt builds the same mail. Bcc and tags had columns already.
ALTER TABLE messages ADD COLUMN reply_to_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE messages ADD COLUMN headers_json TEXT NOT NULL DEFAULT '{}';
