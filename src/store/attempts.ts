// Delivery attempts in D1. A claim makes one attempt the only one that may send a message: the row goes
// to "sending" until the attempt records its outcome or the claim expires (next_attempt_at). Outcomes
// apply only to the claim that made them (status "sending" and the same attempt number), so an attempt
// whose claim expired, or a repeated job, can never move a message that another attempt owns.
import { insertEvent, PENDING_SQL, toRecord, type MessageRecord, type MessageRow, type MessageStatus } from "./messages";
/** Statuses a message waits in between attempts. */
const WAITING = "('scheduled', 'queued', 'retrying')";
const OWN_CLAIM = "id = ? AND status = 'sending' AND attempts = ?";

export type Claim =
  /** This attempt may send; `interrupted`: the previous attempt's claim expired before it recorded anything. */
  | { kind: "claimed"; message: MessageRecord; attempt: number; interrupted: boolean }
  /** Pending, but its next attempt is due later (or another attempt holds the claim until then). */
  | { kind: "not_due"; status: MessageStatus; dueAt: string }
  /** Sent, failed or canceled: nothing left to do. */
  | { kind: "settled"; status: MessageStatus }
  | { kind: "unknown" };

const INTERRUPTED_DETAIL =
  "'attempt ' || attempts || ' ended without recording its outcome (its claim expired): possible duplicate, since the relay may have accepted the mail before that attempt stopped; it keeps its Message-ID'";

/**
 * Claims a due message for one attempt, in one round trip: records the interruption of an expired
 * claim, claims the row (counting the attempt), and reads why not when it could not.
 */
export async function claimMessage(db: D1Database, id: string, { now, leaseMs }: { now: Date; leaseMs: number }): Promise<Claim> {
  const at = now.toISOString();
  const expires = new Date(now.getTime() + leaseMs).toISOString();
  const [interrupted, claimed, current] = await db.batch([
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
  ]);
  const row = claimed?.results[0] as MessageRow | undefined;
  if (row) return { kind: "claimed", message: toRecord(row), attempt: row.attempts, interrupted: (interrupted?.meta.changes ?? 0) > 0 };
  const state = current?.results[0] as Pick<MessageRow, "status" | "next_attempt_at"> | undefined;
  if (!state) return { kind: "unknown" };
  if (state.status === "sent" || state.status === "failed" || state.status === "canceled") return { kind: "settled", status: state.status };
  return { kind: "not_due", status: state.status, dueAt: state.next_attempt_at };
}

interface AttemptOutcome {
  id: string;
  attempt: number;
  at: string;
  smtpCode?: number;
}

/** The relay accepted the mail. Returns whether the claim was still this attempt's. */
export async function recordSent(db: D1Database, o: AttemptOutcome & { detail: string }): Promise<boolean> {
  return applied(
    await db.batch([
      db.prepare(`UPDATE messages SET status = 'sent', sent_at = ?, updated_at = ?, last_error = NULL WHERE ${OWN_CLAIM}`).bind(o.at, o.at, o.id, o.attempt),
      insertEvent(db, o.id, { at: o.at, type: "sent", attempt: o.attempt, smtpCode: o.smtpCode, detail: o.detail }, true),
    ]),
  );
}

/** A transient failure: the claim is released and the next attempt is due at `nextAttemptAt`. */
export async function recordRetry(db: D1Database, o: AttemptOutcome & { reason: string; nextAttemptAt: string }): Promise<boolean> {
  return applied(
    await db.batch([
      db
        .prepare(`UPDATE messages SET status = 'retrying', last_error = ?, next_attempt_at = ?, updated_at = ? WHERE ${OWN_CLAIM}`)
        .bind(o.reason, o.nextAttemptAt, o.at, o.id, o.attempt),
      insertEvent(db, o.id, { at: o.at, type: "deferred", attempt: o.attempt, smtpCode: o.smtpCode, detail: o.reason }, true),
    ]),
  );
}

/** A permanent refusal, or a transient one after the retry window ended. */
export async function recordFailure(db: D1Database, o: AttemptOutcome & { reason: string }): Promise<boolean> {
  return applied(
    await db.batch([
      db.prepare(`UPDATE messages SET status = 'failed', last_error = ?, updated_at = ? WHERE ${OWN_CLAIM}`).bind(o.reason, o.at, o.id, o.attempt),
      insertEvent(db, o.id, { at: o.at, type: "failed", attempt: o.attempt, smtpCode: o.smtpCode, detail: o.reason }, true),
    ]),
  );
}

/** Fails a message that waits for an attempt (none holds a claim) because its retry window ended. */
export async function failWaitingMessage(db: D1Database, { id, at, reason }: { id: string; at: string; reason: string }): Promise<boolean> {
  return applied(
    await db.batch([
      db.prepare(`UPDATE messages SET status = 'failed', last_error = ?, updated_at = ? WHERE id = ? AND status IN ${WAITING}`).bind(reason, at, id),
      insertEvent(db, id, { at, type: "failed", detail: reason }, true),
    ]),
  );
}

function applied([update]: D1Result[]): boolean {
  return (update?.meta.changes ?? 0) > 0;
}
