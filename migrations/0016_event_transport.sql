-- Which transport carried an attempt (TRANSPORT: smtp or cloudflare), on the events its outcome wrote
-- (sent, deferred, bounced, failed); NULL on the others and on attempts that never left.
ALTER TABLE events ADD COLUMN transport TEXT CHECK (transport IN ('smtp', 'cloudflare'));
