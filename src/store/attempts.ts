// Delivery attempts in D1. A claim makes one attempt the only one that may send a message: the row goes
// to "sending" until the attempt records its outcome or the claim expires (next_attempt_at). Outcomes
// apply only to the claim that made them (status "sending" and the same attempt number), so an attempt
// whose claim expired, or a repeated job, can never move a message that another attempt owns.
import type { RecipientStatus, RecipientUpdate } from "../core/outcome";
import { insertEvent, isSettled, PENDING_SQL, toRecord, WAITING_SQL, type MessageRecord, type MessageRow, type MessageStatus } from "./messages";
const OWN_CLAIM = "id = ? AND status = 'sending' AND attempts = ?";

export type Claim =
  /** This attempt may send; `interrupted`: the previous attempt's claim expired before it recorded anything. */
  | { kind: "claimed"; message: MessageRecord; attempt: number; interrupted: boolean; recipients: { address: string; status: RecipientStatus }[] }
  /** Pending, but its next attempt is due later (or another attempt holds the claim until then). */
  | { kind: "not_due"; status: MessageStatus; dueAt: string }
  /** Sent, failed or canceled: nothing left to do. */
  | { kind: "settled"; status: MessageStatus }
  | { kind: "unknown" };

const INTERRUPTED_DETAIL =
  "'attempt ' || attempts || ' ended without recording its outcome (its claim expired): possible duplicate, since the relay may have accepted the mail before that attempt stopped; it keeps its Message-ID'";

/**
 * Claims a due message for one attempt, in one round trip: records the interruption of an expired
 * claim, claims the row (counting the attempt), reads its recipients, and reads why not when it could not.
 */
export async function claimMessage(db: D1Database, id: string, { now, leaseMs }: { now: Date; leaseMs: number }): Promise<Claim> {
  const at = now.toISOString();
  const expires = new Date(now.getTime() + leaseMs).toISOString();
  const [interrupted, claimed, current, recipientRows] = await db.batch([
    db
      .prepare(
        `INSERT INTO events (message_id, at, type, attempt, detail)
         SELECT id, ?1, 'interrupted', attempts, ${INTERRUPTED_DETAIL} FROM messages WHERE id = ?2 AND status = 'sending' AND next_attempt_at <= ?1`,
      )
      .bind(at, id),
    db
      .prepare(
        `UPDATE messages SET status = 'sending', attempts = attempts + 1, next_attempt_at = ?3, updated_at = ?1
         WHERE id = ?2 AND status IN ${PENDING_SQL} AND next_attempt_at <= ?1 RETURNING *`,
      )
      .bind(at, id, expires),
    db.prepare("SELECT status, next_attempt_at FROM messages WHERE id = ?").bind(id),
    db.prepare("SELECT address, status FROM recipients WHERE message_id = ? ORDER BY rowid").bind(id),
  ]);
  const row = claimed?.results[0] as MessageRow | undefined;
  if (row) {
    const recipients = (recipientRows?.results ?? []) as { address: string; status: RecipientStatus }[];
    return { kind: "claimed", message: toRecord(row), attempt: row.attempts, interrupted: (interrupted?.meta.changes ?? 0) > 0, recipients };
  }
  const state = current?.results[0] as Pick<MessageRow, "status" | "next_attempt_at"> | undefined;
  if (!state) return { kind: "unknown" };
  if (isSettled(state.status)) return { kind: "settled", status: state.status };
  return { kind: "not_due", status: state.status, dueAt: state.next_attempt_at };
}

interface AttemptOutcome {
  id: string;
  attempt: number;
  at: string;
  smtpCode?: number;
  /** What the attempt settled for each recipient it tried. */
  recipients: RecipientUpdate[];
}

/**
 * The recipients' outcomes, written only while the attempt still holds its claim; it must come first in
 * the batch, before the message's own guarded update releases the claim.
 */
function updateRecipients(db: D1Database, o: AttemptOutcome): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE recipients SET status = u.status, smtp_code = u.code, detail = u.detail, updated_at = ?1
       FROM (SELECT json_extract(value, '$.address') AS address, json_extract(value, '$.status') AS status,
                    json_extract(value, '$.smtpCode') AS code, json_extract(value, '$.detail') AS detail FROM json_each(?2)) AS u
       WHERE recipients.message_id = ?3 AND recipients.address = u.address
         AND EXISTS (SELECT 1 FROM messages WHERE id = ?3 AND status = 'sending' AND attempts = ?4)`,
    )
    .bind(o.at, JSON.stringify(o.recipients), o.id, o.attempt);
}

/** Every recipient is settled and the relay took the mail for at least one. Returns whether the claim was still this attempt's. */
export async function recordSent(db: D1Database, o: AttemptOutcome & { detail: string }): Promise<boolean> {
  return applied(
    await db.batch([
      updateRecipients(db, o),
      db.prepare(`UPDATE messages SET status = 'sent', sent_at = ?, updated_at = ?, last_error = NULL WHERE ${OWN_CLAIM}`).bind(o.at, o.at, o.id, o.attempt),
      insertEvent(db, o.id, { at: o.at, type: "sent", attempt: o.attempt, smtpCode: o.smtpCode, detail: o.detail }, true),
    ]),
  );
}

/** Some recipient waits: the claim is released and the next attempt is due at `nextAttemptAt`. */
export async function recordRetry(db: D1Database, o: AttemptOutcome & { reason: string; nextAttemptAt: string }): Promise<boolean> {
  return applied(
    await db.batch([
      updateRecipients(db, o),
      db
        .prepare(`UPDATE messages SET status = 'retrying', last_error = ?, next_attempt_at = ?, updated_at = ? WHERE ${OWN_CLAIM}`)
        .bind(o.reason, o.nextAttemptAt, o.at, o.id, o.attempt),
      insertEvent(db, o.id, { at: o.at, type: "deferred", attempt: o.attempt, smtpCode: o.smtpCode, detail: o.reason }, true),
    ]),
  );
}

/** Every recipient is settled and none took the mail: refused for good, or the retry window ended. */
export async function recordFailure(db: D1Database, o: AttemptOutcome & { reason: string }): Promise<boolean> {
  return applied(
    await db.batch([
      updateRecipients(db, o),
      db.prepare(`UPDATE messages SET status = 'failed', last_error = ?, updated_at = ? WHERE ${OWN_CLAIM}`).bind(o.reason, o.at, o.id, o.attempt),
      insertEvent(db, o.id, { at: o.at, type: "failed", attempt: o.attempt, smtpCode: o.smtpCode, detail: o.reason }, true),
    ]),
  );
}

/** Whether the message is recorded as sent by this attempt (a write may commit and still fail on its way back). */
export async function isSentBy(db: D1Database, id: string, attempt: number): Promise<boolean> {
  const row = await db.prepare("SELECT 1 AS yes FROM messages WHERE id = ? AND status = 'sent' AND attempts = ?").bind(id, attempt).first<{ yes: number }>();
  return row !== null;
}

/**
 * Settles a message that waits for an attempt (none holds a claim) because its retry window ended: every
 * recipient still waiting fails with `reason`; the message is "sent" if an earlier attempt delivered it
 * to someone, else "failed".
 */
export async function closeRetryWindow(db: D1Database, { id, at, reason }: { id: string; at: string; reason: string }): Promise<boolean> {
  const [, update] = await db.batch([
    db
      .prepare(
        `UPDATE recipients SET status = 'failed', detail = ?1, updated_at = ?2
         WHERE message_id = ?3 AND status IN ('pending', 'deferred') AND EXISTS (SELECT 1 FROM messages WHERE id = ?3 AND status IN ${WAITING_SQL})`,
      )
      .bind(reason, at, id),
    db
      .prepare(
        `UPDATE messages SET
           status = CASE WHEN EXISTS (SELECT 1 FROM recipients WHERE message_id = ?3 AND status = 'sent') THEN 'sent' ELSE 'failed' END,
           sent_at = CASE WHEN EXISTS (SELECT 1 FROM recipients WHERE message_id = ?3 AND status = 'sent') THEN ?2 END,
           last_error = CASE WHEN EXISTS (SELECT 1 FROM recipients WHERE message_id = ?3 AND status = 'sent') THEN NULL ELSE ?1 END,
           updated_at = ?2
         WHERE id = ?3 AND status IN ${WAITING_SQL}`,
      )
      .bind(reason, at, id),
    insertEvent(db, id, { at, type: "failed", detail: reason }, true),
  ]);
  return (update?.meta.changes ?? 0) > 0;
}

function applied([, update]: D1Result[]): boolean {
  return (update?.meta.changes ?? 0) > 0;
}
