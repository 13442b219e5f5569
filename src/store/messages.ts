// Every D1 query Mailroom makes, in one place; rows are mapped to domain types here and nowhere else.
// Status changes are guarded (`WHERE status IN ...`) so a late or repeated update never moves a
// message backwards, e.g. from "sent" to "retrying".
import type { Mailbox } from "../core/address";
import type { OutgoingMessage } from "../core/message";

export type MessageStatus = "scheduled" | "queued" | "retrying" | "sent" | "failed" | "canceled";
export type EventType = "accepted" | "sent" | "deferred" | "failed" | "dead_lettered";

/** Statuses from which a delivery attempt may still change the message. */
const PENDING = "('queued', 'retrying')";

export interface NewMessage extends OutgoingMessage {
  id: string;
  apiKeyName?: string;
  createdAt: string;
}

export interface MessageRecord extends NewMessage {
  status: MessageStatus;
  bcc: Mailbox[];
  template: string | null;
  tags: string[];
  attempts: number;
  lastError: string | null;
  updatedAt: string;
  sendAt: string | null;
  sentAt: string | null;
}

export interface MessageEvent {
  at: string;
  type: EventType;
  attempt: number | null;
  smtpCode: number | null;
  detail: string | null;
}

interface MessageRow {
  id: string;
  status: MessageStatus;
  message_id: string;
  api_key_name: string | null;
  from_json: string;
  to_json: string;
  cc_json: string;
  bcc_json: string;
  subject: string;
  text_body: string | null;
  html_body: string | null;
  template: string | null;
  tags_json: string;
  attempts: number;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  send_at: string | null;
  sent_at: string | null;
}

function toRecord(row: MessageRow): MessageRecord {
  return {
    id: row.id,
    status: row.status,
    messageId: row.message_id,
    apiKeyName: row.api_key_name ?? undefined,
    from: JSON.parse(row.from_json),
    to: JSON.parse(row.to_json),
    cc: JSON.parse(row.cc_json),
    bcc: JSON.parse(row.bcc_json),
    subject: row.subject,
    text: row.text_body ?? undefined,
    html: row.html_body ?? undefined,
    template: row.template,
    tags: JSON.parse(row.tags_json),
    attempts: row.attempts,
    lastError: row.last_error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    sendAt: row.send_at,
    sentAt: row.sent_at,
  };
}

const INSERT_EVENT = "INSERT INTO events (message_id, at, type, attempt, smtp_code, detail) SELECT ?, ?, ?, ?, ?, ?";

/**
 * An event row. With `onlyIfChanged`, it is written only if the statement just before it in the same
 * batch changed a row, so history never records an outcome the guarded update refused.
 */
function insertEvent(db: D1Database, messageId: string, at: string, type: EventType, attempt?: number, smtpCode?: number, detail?: string, onlyIfChanged = false) {
  return db
    .prepare(onlyIfChanged ? `${INSERT_EVENT} WHERE changes() > 0` : INSERT_EVENT)
    .bind(messageId, at, type, attempt ?? null, smtpCode ?? null, detail ?? null);
}

export async function insertMessage(db: D1Database, m: NewMessage): Promise<void> {
  await db
    .prepare(
      `INSERT INTO messages (id, status, message_id, api_key_name, from_json, to_json, cc_json, subject, text_body, html_body, created_at, updated_at)
       VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(m.id, m.messageId, m.apiKeyName ?? null, JSON.stringify(m.from), JSON.stringify(m.to), JSON.stringify(m.cc), m.subject, m.text ?? null, m.html ?? null, m.createdAt, m.createdAt)
    .run();
}

/** Undoes insertMessage when the queue refused the job, so no row claims a mail that will never go. */
export async function deleteMessage(db: D1Database, id: string): Promise<void> {
  await db.prepare("DELETE FROM messages WHERE id = ?").bind(id).run();
}

export async function recordAccepted(db: D1Database, id: string, at: string): Promise<void> {
  await insertEvent(db, id, at, "accepted").run();
}

export async function getMessage(db: D1Database, id: string): Promise<MessageRecord | null> {
  const row = await db.prepare("SELECT * FROM messages WHERE id = ?").bind(id).first<MessageRow>();
  return row ? toRecord(row) : null;
}

export async function listEvents(db: D1Database, id: string): Promise<MessageEvent[]> {
  const { results } = await db
    .prepare("SELECT at, type, attempt, smtp_code, detail FROM events WHERE message_id = ? ORDER BY at, seq")
    .bind(id)
    .all<{ at: string; type: EventType; attempt: number | null; smtp_code: number | null; detail: string | null }>();
  return results.map((r) => ({ at: r.at, type: r.type, attempt: r.attempt, smtpCode: r.smtp_code, detail: r.detail }));
}

/** Counts a new delivery attempt; returns its number, or null when the message is no longer pending. */
export async function beginAttempt(db: D1Database, id: string, at: string): Promise<number | null> {
  const row = await db
    .prepare(`UPDATE messages SET attempts = attempts + 1, updated_at = ? WHERE id = ? AND status IN ${PENDING} RETURNING attempts`)
    .bind(at, id)
    .first<{ attempts: number }>();
  return row?.attempts ?? null;
}

export async function markSent(db: D1Database, id: string, at: string, attempt: number, smtpCode: number, reply: string): Promise<void> {
  await db.batch([
    db.prepare(`UPDATE messages SET status = 'sent', sent_at = ?, updated_at = ?, last_error = NULL WHERE id = ? AND status IN ${PENDING}`).bind(at, at, id),
    insertEvent(db, id, at, "sent", attempt, smtpCode, reply, true),
  ]);
}

export async function markRetrying(db: D1Database, id: string, at: string, attempt: number, reason: string, smtpCode?: number): Promise<void> {
  await db.batch([
    db.prepare(`UPDATE messages SET status = 'retrying', last_error = ?, updated_at = ? WHERE id = ? AND status IN ${PENDING}`).bind(reason, at, id),
    insertEvent(db, id, at, "deferred", attempt, smtpCode, reason, true),
  ]);
}

export async function markFailed(
  db: D1Database,
  id: string,
  at: string,
  type: "failed" | "dead_lettered",
  reason: string,
  attempt?: number,
  smtpCode?: number,
): Promise<boolean> {
  const [update] = await db.batch([
    db.prepare(`UPDATE messages SET status = 'failed', last_error = ?, updated_at = ? WHERE id = ? AND status IN ${PENDING}`).bind(reason, at, id),
    insertEvent(db, id, at, type, attempt, smtpCode, reason, true),
  ]);
  return (update?.meta.changes ?? 0) > 0;
}
