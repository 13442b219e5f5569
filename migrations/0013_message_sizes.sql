-- How many bytes a message's row holds (its bodies, inline attachments, headers, addresses, tags), written
-- at accept. The consumer claims a chunk of messages until their sizes reach a byte budget, not by count
-- alone: ten rows of 1.9 MB each, per chunk and lane, were most of an isolate's memory.
ALTER TABLE messages ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0;

UPDATE messages SET size_bytes =
  COALESCE(length(CAST(text_body AS BLOB)), 0) + COALESCE(length(CAST(html_body AS BLOB)), 0) + length(CAST(attachments_json AS BLOB))
  + length(CAST(headers_json AS BLOB)) + length(CAST(tags_json AS BLOB)) + length(CAST(subject AS BLOB)) + length(CAST(from_json AS BLOB))
  + length(CAST(to_json AS BLOB)) + length(CAST(cc_json AS BLOB)) + length(CAST(bcc_json AS BLOB)) + length(CAST(reply_to_json AS BLOB));
