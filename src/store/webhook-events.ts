// Webhook events in D1: one row per (history event, subscribed endpoint), made by the events_to_webhooks
// trigger in the transaction that wrote the history (migrations/0012_webhooks.sql), and their attempts.
// A claim makes one delivery attempt the only one that may POST an event ("attempting" until it records
// its answer or the claim expires); an answer is recorded only by the attempt that holds the claim.
import type { PageRequest } from "../core/pagination";
import { webhookPayload, type EmailEventType, type WebhookEventType } from "../core/webhook-events";
import type { WebhookVerdict } from "../core/webhook-retry";
import { toEvent, type EventRow, type MessageEvent } from "./messages";
import { readPage } from "./pages";
import { toWebhook, type WebhookRecord, type WebhookRow } from "./webhooks";

export type WebhookEventStatus = "pending" | "attempting" | "success" | "failed";

export interface WebhookEventRecord {
  id: string;
  webhookId: string;
  /** The message and history event an email.* event reports; null for a suppression.* one. */
  messageId: string | null;
  eventSeq: number | null;
  /** A suppression.* event's payload, made when it happened. */
  payload: string | null;
  type: WebhookEventType;
  createdAt: string;
  status: WebhookEventStatus;
  attempts: number;
  roundStart: number;
  nextAttemptAt: string | null;
}

interface WebhookEventRow {
  id: string;
  webhook_id: string;
  message_id: string | null;
  event_seq: number | null;
  payload: string | null;
  type: WebhookEventType;
  created_at: string;
  status: WebhookEventStatus;
  attempts: number;
  round_start: number;
  next_attempt_at: string | null;
}

const toRecord = (r: WebhookEventRow): WebhookEventRecord => ({
  id: r.id,
  webhookId: r.webhook_id,
  messageId: r.message_id,
  eventSeq: r.event_seq,
  payload: r.payload,
  type: r.type,
  createdAt: r.created_at,
  status: r.status,
  attempts: r.attempts,
  roundStart: r.round_start,
  nextAttemptAt: r.next_attempt_at,
});

/** A webhook event due for delivery: its id, and when. */
export interface DueWebhookEvent {
  id: string;
  dueAt: string;
}

/**
 * The webhook events the history written at `at` for `messageIds` just made (the trigger gives them
 * next_attempt_at = the history's time), to run last in the same batch as that history.
 */
export function newWebhookEvents(db: D1Database, { at, messageIds }: { at: string; messageIds: string[] }): D1PreparedStatement {
  return db
    .prepare(
      `SELECT id, next_attempt_at AS due_at FROM webhook_events INDEXED BY webhook_events_by_event
       WHERE message_id IN (SELECT value FROM json_each(?2)) AND next_attempt_at = ?1 AND status = 'pending' AND attempts = 0`,
    )
    .bind(at, JSON.stringify(messageIds));
}

export function dueEventsOf(result: D1Result | undefined): DueWebhookEvent[] {
  return ((result?.results ?? []) as { id: string; due_at: string }[]).map((r) => ({ id: r.id, dueAt: r.due_at }));
}

/** The message fields a payload is built from. */
export interface PayloadMessage {
  id: string;
  message_id: string;
  from_json: string;
  to_json: string;
  subject: string;
  tags_json: string;
  created_at: string;
}

/** What an event's payload is made from: its own (suppression.*), or its message and history row (email.*). */
export interface EventSource {
  event: WebhookEventRecord;
  message: PayloadMessage | undefined;
  reported: MessageEvent | undefined;
}

/** The payload an event is delivered with: the same bytes for every attempt and replay. */
export function eventPayload({ event, message: m, reported }: EventSource): unknown {
  if (event.payload !== null) return JSON.parse(event.payload);
  if (!m || !reported) throw new Error(`webhook event ${event.id} has neither a payload nor its message`);
  const message = { id: m.id, messageId: m.message_id, from: JSON.parse(m.from_json), to: JSON.parse(m.to_json), subject: m.subject, tags: JSON.parse(m.tags_json), createdAt: m.created_at };
  return webhookPayload(event.type as EmailEventType, message, reported);
}

export type WebhookClaim =
  | ({ kind: "claimed"; webhook: WebhookRecord } & EventSource)
  | { kind: "not_due"; dueAt: string }
  | { kind: "settled"; status: WebhookEventStatus }
  | { kind: "unknown" };

/** Claims a due event for one attempt (counting it), with what its delivery needs, in one round trip. */
export async function claimWebhookEvent(db: D1Database, id: string, { now, leaseMs }: { now: Date; leaseMs: number }): Promise<WebhookClaim> {
  const at = now.toISOString();
  const [before, claimed, webhook, message, reported] = await db.batch([
    db.prepare("SELECT status, next_attempt_at FROM webhook_events WHERE id = ?").bind(id),
    db
      .prepare(
        `UPDATE webhook_events SET status = 'attempting', attempts = attempts + 1, next_attempt_at = ?1
         WHERE id = ?2 AND status IN ('pending', 'attempting') AND next_attempt_at <= ?3 RETURNING *`,
      )
      .bind(new Date(now.getTime() + leaseMs).toISOString(), id, at),
    db.prepare("SELECT w.* FROM webhooks AS w JOIN webhook_events AS e ON e.webhook_id = w.id WHERE e.id = ?").bind(id),
    db
      .prepare("SELECT m.id, m.message_id, m.from_json, m.to_json, m.subject, m.tags_json, m.created_at FROM messages AS m JOIN webhook_events AS e ON e.message_id = m.id WHERE e.id = ?")
      .bind(id),
    db
      .prepare(
        `SELECT h.seq, h.at, h.type, h.attempt, h.smtp_code, h.detail, h.recipient, h.enhanced_code, h.transport
         FROM events AS h JOIN webhook_events AS e ON h.message_id = e.message_id AND h.seq = e.event_seq WHERE e.id = ?`,
      )
      .bind(id),
  ]);
  const row = claimed?.results[0] as WebhookEventRow | undefined;
  if (row) {
    const history = reported!.results[0] as EventRow | undefined;
    return {
      kind: "claimed",
      event: toRecord(row),
      webhook: toWebhook(webhook!.results[0] as WebhookRow),
      message: message!.results[0] as PayloadMessage | undefined,
      reported: history && toEvent(history),
    };
  }
  const state = before?.results[0] as { status: WebhookEventStatus; next_attempt_at: string | null } | undefined;
  if (!state) return { kind: "unknown" };
  if (state.status === "success" || state.status === "failed") return { kind: "settled", status: state.status };
  return { kind: "not_due", dueAt: state.next_attempt_at ?? at };
}

export interface WebhookAttemptRecord {
  eventId: string;
  webhookId: string;
  /** The attempt's number (the event's attempts after its claim). */
  attempt: number;
  attemptId: string;
  statusCode: number;
  response: string;
  sentAt: string;
  verdict: WebhookVerdict;
  /** When a retry is due. */
  nextAttemptAt?: string;
  /** The webhook's deliveries have failed for so long that it is disabled (or the receiver said 410). */
  disable: boolean;
}

/**
 * Records an attempt's answer while the attempt still holds its claim: the attempt row, the event's new
 * status, and the webhook's failure clock (and status). False: the claim had expired; nothing was written.
 */
export async function recordWebhookAttempt(db: D1Database, r: WebhookAttemptRecord): Promise<boolean> {
  const own = "id = ?1 AND status = 'attempting' AND attempts = ?2";
  const status = r.verdict.kind === "success" ? "success" : r.verdict.kind === "retry" ? "pending" : "failed";
  const succeeded = r.verdict.kind === "success";
  const [attemptRow] = await db.batch([
    db
      .prepare(`INSERT INTO webhook_attempts (event_id, n, id, http_status_code, response, sent_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM webhook_events WHERE ${own})`)
      .bind(r.eventId, r.attempt, r.attemptId, r.statusCode, r.response, r.sentAt),
    db
      .prepare(
        // Written only when something changes: a success while nothing failed writes no row.
        `UPDATE webhooks SET failing_since = CASE WHEN ?3 THEN NULL ELSE COALESCE(failing_since, ?4) END,
           status = CASE WHEN ?5 THEN 'disabled' ELSE status END
         WHERE id = ?6 AND changes() > 0 AND (CASE WHEN ?3 THEN failing_since IS NOT NULL ELSE failing_since IS NULL END OR ?5)`,
      )
      .bind(r.eventId, r.attempt, succeeded ? 1 : 0, r.sentAt, r.disable ? 1 : 0, r.webhookId),
    db.prepare(`UPDATE webhook_events SET status = ?3, next_attempt_at = ?4 WHERE ${own}`).bind(r.eventId, r.attempt, status, r.nextAttemptAt ?? null),
  ]);
  return (attemptRow?.meta.changes ?? 0) > 0;
}

/** Settles a claimed event without an attempt: its webhook is disabled, or what it reports is gone. */
export async function failWebhookEvent(db: D1Database, { id, attempt }: { id: string; attempt: number }): Promise<void> {
  await db
    .prepare("UPDATE webhook_events SET status = 'failed', next_attempt_at = NULL, attempts = attempts - 1 WHERE id = ? AND status = 'attempting' AND attempts = ?")
    .bind(id, attempt)
    .run();
}

/** A webhook's events, newest first. Null: the cursor is not one of them. */
export async function listWebhookEvents(db: D1Database, webhookId: string, page: PageRequest) {
  const found = await readPage<WebhookEventRow>(db, { from: "webhook_events", scope: "webhook_id = ?", scopeValues: [webhookId], columns: "*" }, page);
  return found && { events: found.rows.map(toRecord), hasMore: found.hasMore };
}

/** One event of a webhook, with what its payload is built from. */
export async function getWebhookEvent(db: D1Database, webhookId: string, id: string): Promise<EventSource | null> {
  const [event, message, reported] = await db.batch([
    db.prepare("SELECT * FROM webhook_events WHERE id = ? AND webhook_id = ?").bind(id, webhookId),
    db
      .prepare("SELECT m.id, m.message_id, m.from_json, m.to_json, m.subject, m.tags_json, m.created_at FROM messages AS m JOIN webhook_events AS e ON e.message_id = m.id WHERE e.id = ? AND e.webhook_id = ?")
      .bind(id, webhookId),
    db
      .prepare(
        `SELECT h.seq, h.at, h.type, h.attempt, h.smtp_code, h.detail, h.recipient, h.enhanced_code, h.transport
         FROM events AS h JOIN webhook_events AS e ON h.message_id = e.message_id AND h.seq = e.event_seq WHERE e.id = ? AND e.webhook_id = ?`,
      )
      .bind(id, webhookId),
  ]);
  const row = event?.results[0] as WebhookEventRow | undefined;
  if (!row) return null;
  const history = reported!.results[0] as EventRow | undefined;
  return { event: toRecord(row), message: message!.results[0] as PayloadMessage | undefined, reported: history && toEvent(history) };
}

/**
 * Makes an event due again at `now` with a fresh schedule (the same event id, so receivers see the same
 * webhook-id). False: no such event, or an attempt at it is under way.
 */
export async function replayWebhookEvent(db: D1Database, webhookId: string, id: string, now: Date): Promise<"replayed" | "attempting" | "unknown"> {
  const at = now.toISOString();
  const [applied, current] = await db.batch([
    db
      .prepare(
        `UPDATE webhook_events SET status = 'pending', next_attempt_at = ?1, round_start = attempts
         WHERE id = ?2 AND webhook_id = ?3 AND NOT (status = 'attempting' AND next_attempt_at > ?1)`,
      )
      .bind(at, id, webhookId),
    db.prepare("SELECT status FROM webhook_events WHERE id = ? AND webhook_id = ?").bind(id, webhookId),
  ]);
  if ((applied?.meta.changes ?? 0) > 0) return "replayed";
  return current?.results.length ? "attempting" : "unknown";
}

export interface WebhookAttemptView {
  id: string;
  httpStatusCode: number;
  response: string;
  sentAt: string;
}

/** An event's attempts, newest first; null: the cursor is not one of them. */
export async function listWebhookAttempts(db: D1Database, eventId: string, page: PageRequest) {
  type Row = { id: string; http_status_code: number; response: string; sent_at: string };
  // The keyset is (created_at, id): an attempt's created_at is its number, which orders attempts exactly.
  const from = "(SELECT event_id, id, n AS created_at, http_status_code, response, sent_at FROM webhook_attempts)";
  const found = await readPage<Row>(db, { from, scope: "event_id = ?", scopeValues: [eventId], columns: "id, http_status_code, response, sent_at" }, page);
  return found && { attempts: found.rows.map((r): WebhookAttemptView => ({ id: r.id, httpStatusCode: r.http_status_code, response: r.response, sentAt: r.sent_at })), hasMore: found.hasMore };
}

/**
 * Events still to be delivered whose next attempt is overdue by more than the grace (their job was lost, or
 * never sent): made due again now, so that the next sweep leaves them alone for another grace.
 */
export async function takeOverdueWebhookEvents(db: D1Database, { cutoff, now, limit }: { cutoff: string; now: string; limit: number }): Promise<string[]> {
  const { results } = await db
    .prepare(
      `UPDATE webhook_events SET next_attempt_at = ?1
       WHERE id IN (SELECT id FROM webhook_events WHERE status IN ('pending', 'attempting') AND next_attempt_at <= ?2 LIMIT ?3) RETURNING id`,
    )
    .bind(now, cutoff, limit)
    .all<{ id: string }>();
  return results.map((r) => r.id);
}

/**
 * Deletes up to `limit` delivered or failed events (their attempts with them) made before `cutoff`, webhook
 * by webhook through each one's (webhook_id, created_at) index; returns how many.
 */
export async function deleteOldWebhookEvents(db: D1Database, { cutoff, limit }: { cutoff: string; limit: number }): Promise<number> {
  const { meta } = await db
    .prepare(
      `DELETE FROM webhook_events WHERE id IN (
         SELECT e.id FROM webhooks AS w JOIN webhook_events AS e INDEXED BY webhook_events_by_webhook ON e.webhook_id = w.id
         WHERE e.created_at < ?1 AND e.status IN ('success', 'failed') LIMIT ?2)`,
    )
    .bind(cutoff, limit)
    .run();
  return meta.changes ?? 0;
}
