// The suppressions table: each API key's list of addresses its mail is not sent to. Every change is
// scoped to the key, and each addition and removal makes its suppression.added / suppression.removed
// webhook events in the same transaction (their payload made then, since a removed entry is gone after).
import type { PageRequest } from "../core/pagination";
import { readPage } from "./pages";
import { dueEventsOf, type DueWebhookEvent } from "./webhook-events";

export type SuppressionOrigin = "bounce" | "complaint" | "manual";

export interface SuppressionRecord {
  id: string;
  email: string;
  origin: SuppressionOrigin;
  /** The email whose bounce or complaint added it; null when added by hand. */
  sourceId: string | null;
  createdAt: string;
}

type Row = { id: string; email: string; origin: SuppressionOrigin; source_id: string | null; created_at: string };
const toRecord = (r: Row): SuppressionRecord => ({ id: r.id, email: r.email, origin: r.origin, sourceId: r.source_id, createdAt: r.created_at });

/** A random UUID (version 4) made by SQLite, for rows a statement makes. */
export const NEW_UUID_SQL = `lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||
  substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))`;

/**
 * The webhook events of a suppression change, for each enabled webhook of the key subscribed to `type`,
 * with their payload; written only if the statement just before it changed a row (`guarded`). In the SQL,
 * `key` and `email` name the suppression's key and (lower-case) address as SQL expressions.
 */
function suppressionEvents(db: D1Database, type: "suppression.added" | "suppression.removed", at: string, where: { sql: string; values: unknown[] }, guarded: boolean) {
  return db
    .prepare(
      `INSERT INTO webhook_events (id, webhook_id, payload, type, created_at, status, next_attempt_at)
       SELECT ${NEW_UUID_SQL}, w.id,
              json_object('type', ?1, 'created_at', ?2, 'data', json_object('id', s.id, 'email', s.email, 'origin', s.origin, 'source_id', s.source_id, 'created_at', s.created_at)),
              ?1, ?2, 'pending', ?2
       FROM suppressions AS s JOIN webhooks AS w ON w.api_key_name = s.api_key_name AND w.status = 'enabled'
       WHERE ${where.sql} AND EXISTS (SELECT 1 FROM json_each(w.events_json) WHERE value = ?1)${guarded ? " AND changes() > 0" : ""}`,
    )
    .bind(type, at, ...where.values);
}

/** The suppression events made at `at` (the last statement of the batch that made them). */
export function newSuppressionEvents(db: D1Database, at: string): D1PreparedStatement {
  return db
    .prepare("SELECT id, next_attempt_at AS due_at FROM webhook_events WHERE next_attempt_at = ?1 AND status IN ('pending', 'attempting') AND attempts = 0 AND payload IS NOT NULL")
    .bind(at);
}

/**
 * Statements that put `email` on the list of the key that sent message `messageId` (origin bounce or
 * complaint), unless it is there already, with its suppression.added events — only if the same batch
 * recorded the message's `because` event (bounced or complained) for that address at `at`, so a refusal
 * or report that was not recorded (a lost claim, a repeated report) suppresses nothing.
 */
export function suppressFromMessage(
  db: D1Database,
  { messageId, email, origin, at, because }: { messageId: string; email: string; origin: "bounce" | "complaint"; at: string; because: "bounced" | "complained" },
): D1PreparedStatement[] {
  return [
    db
      .prepare(
        `INSERT OR IGNORE INTO suppressions (api_key_name, email, id, origin, source_id, created_at)
         SELECT api_key_name, lower(?2), ${NEW_UUID_SQL}, ?3, ?1, ?4 FROM messages WHERE id = ?1 AND api_key_name IS NOT NULL
           AND EXISTS (SELECT 1 FROM events WHERE message_id = ?1 AND type = ?5 AND recipient = ?2 AND at = ?4)`,
      )
      .bind(messageId, email, origin, at, because),
    suppressionEvents(db, "suppression.added", at, { sql: "s.api_key_name = (SELECT api_key_name FROM messages WHERE id = ?3) AND s.email = lower(?4)", values: [messageId, email] }, true),
  ];
}

/** Adds addresses to a key's list by hand; each one's entry (new, or the one already there), in order. */
export async function addSuppressions(db: D1Database, apiKeyName: string, emails: string[], at: string): Promise<{ entries: SuppressionRecord[]; created: boolean[]; webhookEvents: DueWebhookEvent[] }> {
  const lower = emails.map((e) => e.toLowerCase());
  const before = await db.prepare("SELECT email FROM suppressions WHERE api_key_name = ? AND email IN (SELECT value FROM json_each(?))").bind(apiKeyName, JSON.stringify(lower)).all<{ email: string }>();
  const existed = new Set(before.results.map((r) => r.email));
  const results = await db.batch([
    ...lower.flatMap((email) => [
      db.prepare(`INSERT OR IGNORE INTO suppressions (api_key_name, email, id, origin, source_id, created_at) VALUES (?1, ?2, ${NEW_UUID_SQL}, 'manual', NULL, ?3)`).bind(apiKeyName, email, at),
      suppressionEvents(db, "suppression.added", at, { sql: "s.api_key_name = ?3 AND s.email = ?4", values: [apiKeyName, email] }, true),
    ]),
    db.prepare("SELECT * FROM suppressions WHERE api_key_name = ? AND email IN (SELECT value FROM json_each(?))").bind(apiKeyName, JSON.stringify(lower)),
    newSuppressionEvents(db, at),
  ]);
  const rows = new Map(((results.at(-2)?.results ?? []) as Row[]).map((r) => [r.email, toRecord(r)]));
  return { entries: lower.map((e) => rows.get(e)!), created: lower.map((e, i) => !existed.has(e) && lower.indexOf(e) === i), webhookEvents: dueEventsOf(results.at(-1)) };
}

/** Where an id or an address names an entry of the key's list. */
const byIdOrEmail = (idOrEmail: string) => (idOrEmail.includes("@") ? { column: "email", value: idOrEmail.toLowerCase() } : { column: "id", value: idOrEmail });

export async function getSuppression(db: D1Database, apiKeyName: string, idOrEmail: string): Promise<SuppressionRecord | null> {
  const { column, value } = byIdOrEmail(idOrEmail);
  const row = await db.prepare(`SELECT * FROM suppressions WHERE api_key_name = ? AND ${column} = ?`).bind(apiKeyName, value).first<Row>();
  return row ? toRecord(row) : null;
}

/** Removes entries from the key's list, each by id or address; the id of each one removed (undefined: not there). */
export async function removeSuppressions(db: D1Database, apiKeyName: string, idsOrEmails: string[], at: string): Promise<{ removed: (string | undefined)[]; webhookEvents: DueWebhookEvent[] }> {
  const statements = idsOrEmails.flatMap((idOrEmail) => {
    const { column, value } = byIdOrEmail(idOrEmail);
    return [
      db.prepare(`SELECT id FROM suppressions WHERE api_key_name = ? AND ${column} = ?`).bind(apiKeyName, value),
      suppressionEvents(db, "suppression.removed", at, { sql: `s.api_key_name = ?3 AND s.${column} = ?4`, values: [apiKeyName, value] }, false),
      db.prepare(`DELETE FROM suppressions WHERE api_key_name = ? AND ${column} = ?`).bind(apiKeyName, value),
    ];
  });
  const results = await db.batch([...statements, newSuppressionEvents(db, at)]);
  const removed = idsOrEmails.map((_, i) => (results[3 * i + 2]?.meta.changes ? (results[3 * i]?.results[0] as { id: string } | undefined)?.id : undefined));
  return { removed, webhookEvents: dueEventsOf(results.at(-1)) };
}

/** A key's list, newest first, optionally of one origin; null: the cursor is not in it. */
export async function listSuppressions(db: D1Database, apiKeyName: string, page: PageRequest, origin?: SuppressionOrigin) {
  const scope = origin ? { scope: "api_key_name = ? AND origin = ?", scopeValues: [apiKeyName, origin] } : { scope: "api_key_name = ?", scopeValues: [apiKeyName] };
  const found = await readPage<Row>(db, { from: "suppressions", columns: "*", ...scope }, page);
  return found && { entries: found.rows.map(toRecord), hasMore: found.hasMore };
}
