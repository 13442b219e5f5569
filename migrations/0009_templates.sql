-- The template a message was rendered from, {"id", "locale"} (its variables are not kept: the rendered
-- subject and bodies are, and retention clears those); NULL for a message sent with its own bodies.
ALTER TABLE messages ADD COLUMN template_json TEXT;
