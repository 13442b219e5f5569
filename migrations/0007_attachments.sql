-- Attachments (base64, at most 640 KiB decoded per message, so a row stays far below D1's limit), stored
-- with the message so every attempt builds the same mail; retention clears them with the bodies.
ALTER TABLE messages ADD COLUMN attachments_json TEXT NOT NULL DEFAULT '[]';
