// The messages table and its history: storing an accepted message, reading it back. Rows are mapped to
// domain types here and nowhere else; delivery attempts (claims, outcomes) are in attempts.ts.
import type { Mailbox } from "../core/address";
import type { OutgoingMessage } from "../core/message";

export type MessageStatus = "scheduled" | "queued" | "sending" | "retrying" | "sent" | "failed" | "canceled";
export type EventType = "accepted" | "sent" | "deferred" | "failed" | "interrupted";

/** Statuses that still need an attempt, as SQL; "sending" only once its claim has expired. */
export const PENDING_SQL = "('scheduled', 'queued', 'retrying', 'sending')";

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
  scheduledAt: string | null;
  sentAt: string | null;
  /** While pending: when the next attempt is due; while "sending": when the claim expires. */
  nextAttemptAt: string;
}

export interface MessageEvent {
  at: string;
  type: EventType;
  attempt: number | null;
  smtpCode: number | null;
  detail: string | null;
}

export interface MessageRow {
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
  scheduled_at: string | null;
  sent_at: string | null;
  next_attempt_at: string;
}

export function toRecord(row: MessageRow): MessageRecord {
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
    scheduledAt: row.scheduled_at,
    sentAt: row.sent_at,
    nextAttemptAt: row.next_attempt_at,
  };
}

const INSERT_EVENT = "INSERT INTO events (message_id, at, type, attempt, smtp_code, detail) SELECT ?, ?, ?, ?, ?, ?";

export interface NewEvent {
  at: string;
  type: EventType;
  attempt?: number;
  smtpCode?: number;
  detail?: string;
}

/**
 * An event row. With `onlyIfChanged`, it is written only if the statement just before it in the same
 * batch changed a row, so history never records an outcome the guarded update refused.
 */
export function insertEvent(db: D1Database, messageId: string, event: NewEvent, onlyIfChanged = false) {
  return db
    .prepare(onlyIfChanged ? `${INSERT_EVENT} WHERE changes() > 0` : INSERT_EVENT)
    .bind(messageId, event.at, event.type, event.attempt ?? null, event.smtpCode ?? null, event.detail ?? null);
}

export async function insertMessage(db: D1Database, m: NewMessage): Promise<void> {
  await db
    .prepare(
      `INSERT INTO messages (id, status, message_id, api_key_name, from_json, to_json, cc_json, subject, text_body, html_body, created_at, updated_at, next_attempt_at)
       VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(m.id, m.messageId, m.apiKeyName ?? null, JSON.stringify(m.from), JSON.stringify(m.to), JSON.stringify(m.cc), m.subject, m.text ?? null, m.html ?? null, m.createdAt, m.createdAt, m.createdAt)
    .run();
}

/** Undoes insertMessage when the queue refused the job; if this fails too, the sweeper delivers the row. */
export async function deleteMessage(db: D1Database, id: string): Promise<void> {
  await db.prepare("DELETE FROM messages WHERE id = ?").bind(id).run();
}

export async function recordAccepted(db: D1Database, id: string, at: string): Promise<void> {
  await insertEvent(db, id, { at, type: "accepted" }).run();
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
