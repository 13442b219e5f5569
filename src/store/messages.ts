// The messages table and its history: storing an accepted message, reading it back. Rows are mapped to
// domain types here and nowhere else; delivery attempts (claims, outcomes) are in attempts.ts.
import type { OutgoingMessage } from "../core/message";
import type { RecipientStatus } from "../core/outcome";
import type { TransportName } from "../transport/transport";
import { dueEventsOf, newWebhookEvents, type DueWebhookEvent } from "./webhook-events";

export type MessageStatus = "scheduled" | "queued" | "sending" | "retrying" | "sent" | "failed" | "canceled";
export type EventType = "accepted" | "sent" | "deferred" | "bounced" | "delivered" | "complained" | "suppressed" | "failed" | "interrupted" | "rescheduled" | "canceled";

/** Statuses a message waits in between attempts, as SQL. */
export const WAITING_SQL = "('scheduled', 'queued', 'retrying')";
/** Recipient statuses of someone the relay took the mail for (a later report may say more), as SQL. */
export const SERVED_SQL = "('sent', 'delivered', 'complained')";
/** Statuses that still need an attempt, as SQL; "sending" only once its claim has expired. */
export const PENDING_SQL = "('scheduled', 'queued', 'retrying', 'sending')";

/** Sent, failed or canceled: nothing is left to do for the message. */
export function isSettled(status: MessageStatus): boolean {
  return status === "sent" || status === "failed" || status === "canceled";
}

export interface Tag {
  name: string;
  value: string;
}

export interface NewMessage extends OutgoingMessage {
  id: string;
  /** Stored and returned, never sent. */
  tags: Tag[];
  /** The API key that sent it: the only key that may read or change it. */
  apiKeyName: string;
  createdAt: string;
  /** The envelope recipients, each of which gets an outcome of its own. */
  recipients: string[];
  /** When to send; absent: now. */
  scheduledAt?: string;
  /** Where the attachments are in R2 when they are too large for the row (`attachments` is then empty). */
  attachmentsKey?: string;
  /** The template it was rendered from. */
  template?: TemplateUsed;
}

export interface TemplateUsed {
  id: string;
  /** The locale variant used; null: the default. */
  locale: string | null;
}

export interface MessageRecord extends Omit<NewMessage, "recipients" | "scheduledAt" | "apiKeyName"> {
  /** Null for a row stored before messages were kept per key: no key sees it. */
  apiKeyName: string | null;
  status: MessageStatus;
  attempts: number;
  lastError: string | null;
  updatedAt: string;
  scheduledAt: string | null;
  sentAt: string | null;
  /** While pending: when the next attempt is due; while "sending": when the claim expires. */
  nextAttemptAt: string;
}

export interface RecipientRecord {
  address: string;
  status: RecipientStatus;
  smtpCode: number | null;
  detail: string | null;
}

export interface MessageEvent {
  /** Its place in the message's history (1, 2, 3…); with the message's id, what names it. */
  seq: number;
  at: string;
  type: EventType;
  attempt: number | null;
  smtpCode: number | null;
  detail: string | null;
  /** The one recipient a per-recipient event (bounced) is about. */
  recipient: string | null;
  enhancedCode: string | null;
  /** Which transport carried the attempt whose outcome this is (sent, deferred, bounced, failed). */
  transport: TransportName | null;
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
  reply_to_json: string;
  headers_json: string;
  attachments_json: string;
  attachments_key: string | null;
  template_json: string | null;
  subject: string;
  text_body: string | null;
  html_body: string | null;
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
    apiKeyName: row.api_key_name,
    from: JSON.parse(row.from_json),
    to: JSON.parse(row.to_json),
    cc: JSON.parse(row.cc_json),
    bcc: JSON.parse(row.bcc_json),
    replyTo: JSON.parse(row.reply_to_json),
    headers: JSON.parse(row.headers_json),
    attachments: JSON.parse(row.attachments_json),
    ...(row.attachments_key ? { attachmentsKey: row.attachments_key } : {}),
    ...(row.template_json ? { template: JSON.parse(row.template_json) } : {}),
    subject: row.subject,
    text: row.text_body ?? undefined,
    html: row.html_body ?? undefined,
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

/** An event's seq counts per message (the table's key is message_id, seq: one row written per event). */
const INSERT_EVENT =
  "INSERT INTO events (message_id, seq, at, type, attempt, smtp_code, detail, recipient, enhanced_code, transport) SELECT ?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE message_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9";
/** The same for each message a statement's SELECT yields as messages.id (see attempts.ts). */
export const NEXT_EVENT_SEQ_SQL = "(SELECT COALESCE(MAX(e.seq), 0) + 1 FROM events AS e WHERE e.message_id = messages.id)";

export interface NewEvent {
  at: string;
  type: EventType;
  attempt?: number;
  smtpCode?: number;
  detail?: string;
  recipient?: string;
  enhancedCode?: string;
  /** The transport that carried the attempt, on the events of its outcome. */
  transport?: TransportName;
}

const eventValues = (messageId: string, e: NewEvent) => [messageId, e.at, e.type, e.attempt ?? null, e.smtpCode ?? null, e.detail ?? null, e.recipient ?? null, e.enhancedCode ?? null, e.transport ?? null];

/**
 * An event row. With `onlyIfChanged`, it is written only if the statement just before it in the same
 * batch changed a row, so history never records an outcome the guarded update refused.
 */
export function insertEvent(db: D1Database, messageId: string, event: NewEvent, onlyIfChanged = false) {
  return db
    .prepare(onlyIfChanged ? `${INSERT_EVENT} WHERE changes() > 0` : INSERT_EVENT)
    .bind(...eventValues(messageId, event));
}


/**
 * The Idempotency-Key a request holds, as the key's row names it (its first message's id). Messages stored
 * under a fence are written only while the key still names that id: once a retry has taken the key over
 * (the first request looked abandoned), the first request's insert writes nothing, so only one of the two
 * can ever be stored. A takeover and an insert are each one transaction, so one of them comes first.
 */
export interface KeyFence {
  apiKeyName: string;
  key: string;
  messageId: string;
}

/** The request's Idempotency-Key was taken over by a retry before its messages were stored: nothing was. */
export class KeyTakenOver extends Error {
  constructor() {
    super("a retry took this Idempotency-Key over before the messages were stored; none were");
    this.name = "KeyTakenOver";
  }
}

/**
 * Each message's row, a pending row per recipient and its "accepted" event, all in one transaction. Returns
 * the webhook events that made (email.scheduled, for scheduled messages), to be queued.
 */
export async function insertMessages(db: D1Database, messages: NewMessage[], fence?: KeyFence): Promise<DueWebhookEvent[]> {
  const scheduled = messages.filter((m) => m.scheduledAt).map((m) => m.id);
  const made = scheduled.length > 0 ? [newWebhookEvents(db, { at: messages[0]!.createdAt, messageIds: scheduled })] : [];
  const results = await db.batch([...messages.flatMap((m) => insertStatements(db, m, fence)), ...made]);
  if (fence && results[0]?.meta.changes === 0) throw new KeyTakenOver();
  return made.length > 0 ? dueEventsOf(results.at(-1)) : [];
}

/** D1 refuses a row over 2,000,000 bytes; this leaves room for the columns Mailroom adds later (last_error…). */
export const MAX_ROW_BYTES = 1_900_000;

/** UTF-8 bytes of a string, without encoding it. */
function utf8Bytes(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) (bytes += 4), i++; // a surrogate pair
    else bytes += 3; // the rest of the BMP, and a lone surrogate (stored as U+FFFD)
  }
  return bytes;
}

/** About how many bytes a message's row takes (its text columns; the few fixed ones are in the margin). */
export function storedRowBytes(m: NewMessage): number {
  const texts = [m.subject, m.text ?? "", m.html ?? "", JSON.stringify(m.attachments), JSON.stringify(m.headers), JSON.stringify(m.tags)];
  const addresses = [m.from, m.to, m.cc, m.bcc, m.replyTo].map((a) => JSON.stringify(a));
  return [...texts, ...addresses, m.template ? JSON.stringify(m.template) : ""].reduce((sum, text) => sum + utf8Bytes(text), 0);
}

const MESSAGE_COLUMNS = `id, status, message_id, api_key_name, from_json, to_json, cc_json, bcc_json, reply_to_json, headers_json, tags_json,
  attachments_json, attachments_key, template_json, subject, text_body, html_body, created_at, updated_at, scheduled_at, next_attempt_at, size_bytes`;
const FENCE_HOLDS = "EXISTS (SELECT 1 FROM idempotency_keys WHERE api_key_name = ? AND key = ? AND message_id = ?)";

function insertStatements(db: D1Database, m: NewMessage, fence: KeyFence | undefined): D1PreparedStatement[] {
  const values = [
    ...[m.id, m.scheduledAt ? "scheduled" : "queued", m.messageId, m.apiKeyName, JSON.stringify(m.from), JSON.stringify(m.to), JSON.stringify(m.cc)],
    ...[JSON.stringify(m.bcc), JSON.stringify(m.replyTo), JSON.stringify(m.headers), JSON.stringify(m.tags), JSON.stringify(m.attachments), m.attachmentsKey ?? null, m.template ? JSON.stringify(m.template) : null],
    ...[m.subject, m.text ?? null, m.html ?? null, m.createdAt, m.createdAt, m.scheduledAt ?? null, m.scheduledAt ?? m.createdAt, storedRowBytes(m)],
  ];
  const placeholders = values.map(() => "?").join(", ");
  const message = fence
    ? db.prepare(`INSERT INTO messages (${MESSAGE_COLUMNS}) SELECT ${placeholders} WHERE ${FENCE_HOLDS}`).bind(...values, fence.apiKeyName, fence.key, fence.messageId)
    : db.prepare(`INSERT INTO messages (${MESSAGE_COLUMNS}) VALUES (${placeholders})`).bind(...values);
  // Under a fence the message may not have been written: its recipients and event follow it or not at all.
  const stored = fence ? " WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?1)" : "";
  return [
    message,
    db
      .prepare(`INSERT OR IGNORE INTO recipients (message_id, address, position, status, updated_at) SELECT ?1, value, key, 'pending', ?2 FROM json_each(?3)${stored}`)
      .bind(m.id, m.createdAt, JSON.stringify(m.recipients)),
    fence ? insertEventIfStored(db, m) : insertEvent(db, m.id, { at: m.createdAt, type: "accepted" }),
  ];
}

function insertEventIfStored(db: D1Database, m: NewMessage): D1PreparedStatement {
  return db.prepare(`${INSERT_EVENT} WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?1)`).bind(...eventValues(m.id, { at: m.createdAt, type: "accepted" }));
}

/**
 * Undoes insertMessages for all of `ids` (their recipients and events go with them) unless an attempt has
 * claimed one of them already: then the jobs went out and the rows are in, and all are kept. Returns true
 * when none of them is left (withdrawn, or never stored), false when they are on their way.
 */
export async function withdrawMessages(db: D1Database, ids: string[]): Promise<boolean> {
  const list = JSON.stringify(ids);
  const [, left] = await db.batch([
    db
      .prepare(
        `DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?1))
           AND NOT EXISTS (SELECT 1 FROM messages WHERE id IN (SELECT value FROM json_each(?1)) AND NOT (status IN ('queued', 'scheduled') AND attempts = 0))`,
      )
      .bind(list),
    db.prepare("SELECT 1 AS yes FROM messages WHERE id IN (SELECT value FROM json_each(?)) LIMIT 1").bind(list),
  ]);
  return (left?.results.length ?? 0) === 0;
}

export async function getMessage(db: D1Database, id: string): Promise<MessageRecord | null> {
  const row = await db.prepare("SELECT * FROM messages WHERE id = ?").bind(id).first<MessageRow>();
  return row ? toRecord(row) : null;
}

export interface MessageHistory {
  message: MessageRecord;
  events: MessageEvent[];
  recipients: RecipientRecord[];
}

export type EventRow = { seq: number; at: string; type: EventType; attempt: number | null; smtp_code: number | null; detail: string | null; recipient: string | null; enhanced_code: string | null; transport: TransportName | null };
export function toEvent(r: EventRow): MessageEvent {
  return { seq: r.seq, at: r.at, type: r.type, attempt: r.attempt, smtpCode: r.smtp_code, detail: r.detail, recipient: r.recipient, enhancedCode: r.enhanced_code, transport: r.transport };
}

type RecipientRow = { address: string; status: RecipientStatus; smtp_code: number | null; detail: string | null };

/** The message, its events and its recipients' outcomes, in one round trip. */
export async function getMessageWithHistory(db: D1Database, id: string): Promise<MessageHistory | null> {
  const [message, events, recipients] = await db.batch([
    db.prepare("SELECT * FROM messages WHERE id = ?").bind(id),
    db.prepare("SELECT seq, at, type, attempt, smtp_code, detail, recipient, enhanced_code, transport FROM events WHERE message_id = ? ORDER BY at, seq").bind(id),
    db.prepare("SELECT address, status, smtp_code, detail FROM recipients WHERE message_id = ? ORDER BY position").bind(id),
  ]);
  const row = message?.results[0] as MessageRow | undefined;
  if (!row) return null;
  return {
    message: toRecord(row),
    events: (events!.results as EventRow[]).map(toEvent),
    recipients: (recipients!.results as RecipientRow[]).map((r) => ({ address: r.address, status: r.status, smtpCode: r.smtp_code, detail: r.detail })),
  };
}
