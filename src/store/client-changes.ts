// What a client may change about a message it sent: move a scheduled send, or cancel anything not yet
// handed to the relay. Both are guarded by status in the same statement, so neither can race an
// attempt: a message an attempt has claimed ("sending"), or that reached someone, is left alone. A
// message another API key sent is, to this key, no message at all ("unknown").
import { insertEvent, SERVED_SQL, WAITING_SQL, type MessageStatus } from "./messages";
import { dueEventsOf, newWebhookEvents, type DueWebhookEvent } from "./webhook-events";

/** `webhookEvents`: those the change's history made, to be queued. */
export type Change = { kind: "changed"; webhookEvents: DueWebhookEvent[] } | { kind: "refused"; status: MessageStatus; partlySent: boolean } | { kind: "unknown" };

const CURRENT = `SELECT status, EXISTS (SELECT 1 FROM recipients WHERE message_id = ?1 AND status IN ${SERVED_SQL}) AS partly_sent FROM messages WHERE id = ?1 AND api_key_name = ?2`;

function toChange(applied: D1Result | undefined, current: D1Result | undefined, made?: D1Result): Change {
  if ((applied?.meta.changes ?? 0) > 0) return { kind: "changed", webhookEvents: dueEventsOf(made) };
  const row = current?.results[0] as { status: MessageStatus; partly_sent: number } | undefined;
  return row ? { kind: "refused", status: row.status, partlySent: row.partly_sent === 1 } : { kind: "unknown" };
}

/**
 * Moves a scheduled message to `scheduledAt`; with `sendNow` (the time has come already) it is queued at
 * once instead, its retry window starting now.
 */
export async function rescheduleMessage(
  db: D1Database,
  { id, apiKeyName, at, scheduledAt, sendNow }: { id: string; apiKeyName: string; at: string; scheduledAt: string; sendNow: boolean },
): Promise<Change> {
  const [applied, , current] = await db.batch([
    db
      .prepare(`UPDATE messages SET status = ?1, scheduled_at = ?2, next_attempt_at = ?2, updated_at = ?3 WHERE id = ?4 AND api_key_name = ?5 AND status = 'scheduled'`)
      .bind(sendNow ? "queued" : "scheduled", scheduledAt, at, id, apiKeyName),
    insertEvent(db, id, { at, type: "rescheduled", detail: sendNow ? "to be sent now" : `scheduled for ${scheduledAt}` }, true),
    db.prepare(CURRENT).bind(id, apiKeyName),
  ]);
  return toChange(applied, current);
}

/** Cancels a message no attempt holds and nobody has received: its waiting recipients will never get it. */
export async function cancelMessage(db: D1Database, { id, apiKeyName, at }: { id: string; apiKeyName: string; at: string }): Promise<Change> {
  const cancelable = `api_key_name = ?3 AND status IN ${WAITING_SQL} AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = ?1 AND status IN ${SERVED_SQL})`;
  const [, applied, , current, made] = await db.batch([
    db
      .prepare(
        `UPDATE recipients SET status = 'failed', detail = 'canceled before delivery', updated_at = ?2
         WHERE message_id = ?1 AND status IN ('pending', 'deferred') AND EXISTS (SELECT 1 FROM messages WHERE id = ?1 AND ${cancelable})`,
      )
      .bind(id, at, apiKeyName),
    db.prepare(`UPDATE messages SET status = 'canceled', updated_at = ?2 WHERE id = ?1 AND ${cancelable}`).bind(id, at, apiKeyName),
    insertEvent(db, id, { at, type: "canceled", detail: "canceled by the client" }, true),
    db.prepare(CURRENT).bind(id, apiKeyName),
    newWebhookEvents(db, { at, messageIds: [id] }),
  ]);
  return toChange(applied, current, made);
}
