// The ids Mailroom gives emails, webhooks and their events are UUIDs: a path segment that is not one names
// nothing, and is answered 404 without a query.
export const ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
