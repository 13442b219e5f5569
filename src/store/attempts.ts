// Delivery attempts in D1. A claim makes one attempt the only one that may send a message: the row goes
// to "sending" until the attempt records its outcome or the claim expires (next_attempt_at). Outcomes
// apply only to the claim that made them (status "sending" and the same attempt number), so an attempt
// whose claim expired, or a repeated job, can never move a message that another attempt owns.
import type { RecipientStatus, RecipientUpdate } from "../core/outcome";
import { insertEvent, isSettled, SERVED_SQL, NEXT_EVENT_SEQ_SQL, type NewEvent, PENDING_SQL, toRecord, WAITING_SQL, type MessageRecord, type MessageRow, type MessageStatus } from "./messages";
import { suppressesAddress } from "../core/suppression";
import { suppressFromMessage } from "./suppressions";
import { dueEventsOf, newWebhookEvents, type DueWebhookEvent } from "./webhook-events";
import type { TransportName } from "../transport/transport";

const OWN_CLAIM = "id = ? AND status = 'sending' AND attempts = ?";

export type Claim =
  /**
   * This attempt may send; `interrupted`: the previous attempt's claim expired before it recorded anything.
   * `before` is the row as the claim found it, so that an attempt never started can be released (releaseClaims).
   */
  | {
      kind: "claimed";
      message: MessageRecord;
      attempt: number;
      interrupted: boolean;
      recipients: { address: string; status: RecipientStatus }[];
      /** Waiting recipients whose address is on the key's suppression list, with the entry's origin. */
      suppressed: { address: string; origin: string }[];
      claimedAt: string;
      before: { status: MessageStatus; nextAttemptAt: string };
    }
  /** Pending, but its next attempt is due later (or another attempt holds the claim until then). */
  | { kind: "not_due"; status: MessageStatus; dueAt: string }
  /** Due, but the messages before it in the list already filled the claim's byte budget: nothing was done to it. */
  | { kind: "over_budget" }
  /** Sent, failed or canceled: nothing left to do. */
  | { kind: "settled"; status: MessageStatus }
  | { kind: "unknown" };

type Claimed = Extract<Claim, { kind: "claimed" }>;

const INTERRUPTED_DETAIL =
  "'attempt ' || attempts || ' ended without recording its outcome (its claim expired): possible duplicate, since the relay may have accepted the mail before that attempt stopped; it keeps its Message-ID'";

/**
 * The due messages among a list, in its order, up to a byte budget: each is taken while the sizes of those
 * before it are under the budget (so the first always is, and the last may pass it by its own size).
 * ?1 is the time, ?2 the list (JSON), ?4 the budget.
 */
const WITHIN_BUDGET = `SELECT id FROM (
    SELECT m.id, m.size_bytes, SUM(m.size_bytes) OVER (ORDER BY j.key) AS running
    FROM json_each(?2) AS j CROSS JOIN messages AS m ON m.id = j.value
    WHERE +m.status IN ${PENDING_SQL} AND +m.next_attempt_at <= ?1)
  WHERE running - size_bytes < ?4`;
// (CROSS JOIN and the unary + keep SQLite on the list and the primary key: by the due-time index it read
// every pending message of the table, about 50 rows per mail delivered with a thousand waiting.)

/**
 * Claims the due messages among `ids` for one attempt each, in one round trip, in their order and until
 * their rows' sizes reach `budgetBytes`: records the interruption of expired claims, claims the rows
 * (counting an attempt each), reads their recipients, and reads why not for the ones it could not claim
 * (read first, in the same transaction). Ids it does not know are "unknown"; due ones past the budget,
 * "over_budget" (untouched: an interruption is recorded only with the claim that follows it).
 */
export async function claimMessages(db: D1Database, ids: string[], { now, leaseMs, budgetBytes = Number.MAX_SAFE_INTEGER }: { now: Date; leaseMs: number; budgetBytes?: number }): Promise<Map<string, Claim>> {
  const at = now.toISOString();
  const expires = new Date(now.getTime() + leaseMs).toISOString();
  const idList = JSON.stringify([...new Set(ids)]);
  const [current, interrupted, claimed, recipientRows, suppressedRows] = await db.batch([
    db.prepare("SELECT id, status, next_attempt_at FROM messages WHERE id IN (SELECT value FROM json_each(?))").bind(idList),
    db
      .prepare(
        `INSERT INTO events (message_id, seq, at, type, attempt, detail)
         SELECT id, ${NEXT_EVENT_SEQ_SQL}, ?1, 'interrupted', attempts, ${INTERRUPTED_DETAIL} FROM messages
         WHERE id IN (${WITHIN_BUDGET}) AND +status = 'sending' RETURNING message_id`,
      )
      .bind(at, idList, null, budgetBytes),
    db
      .prepare(`UPDATE messages SET status = 'sending', attempts = attempts + 1, next_attempt_at = ?3, updated_at = ?1 WHERE id IN (${WITHIN_BUDGET}) RETURNING *`)
      .bind(at, idList, expires, budgetBytes),
    db.prepare("SELECT message_id, address, status FROM recipients WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY message_id, position").bind(idList),
    db
      .prepare(
        `SELECT r.message_id, r.address, s.origin FROM recipients AS r JOIN messages AS m ON m.id = r.message_id
         JOIN suppressions AS s ON s.api_key_name = m.api_key_name AND s.email = lower(r.address)
         WHERE r.message_id IN (SELECT value FROM json_each(?)) AND r.status IN ('pending', 'deferred')`,
      )
      .bind(idList),
  ]);
  const wasInterrupted = new Set((interrupted?.results ?? []).map((row) => (row as { message_id: string }).message_id));
  const recipientsOf = new Map<string, { address: string; status: RecipientStatus }[]>();
  for (const { message_id, address, status } of (recipientRows?.results ?? []) as { message_id: string; address: string; status: RecipientStatus }[]) {
    recipientsOf.set(message_id, [...(recipientsOf.get(message_id) ?? []), { address, status }]);
  }
  const suppressedOf = new Map<string, { address: string; origin: string }[]>();
  for (const { message_id, address, origin } of (suppressedRows?.results ?? []) as { message_id: string; address: string; origin: string }[]) {
    suppressedOf.set(message_id, [...(suppressedOf.get(message_id) ?? []), { address, origin }]);
  }
  const found = new Map(((current?.results ?? []) as Pick<MessageRow, "id" | "status" | "next_attempt_at">[]).map((state) => [state.id, state]));
  const claims = new Map<string, Claim>();
  for (const row of (claimed?.results ?? []) as MessageRow[]) {
    const state = found.get(row.id)!;
    claims.set(row.id, {
      kind: "claimed",
      message: toRecord(row),
      attempt: row.attempts,
      interrupted: wasInterrupted.has(row.id),
      recipients: recipientsOf.get(row.id) ?? [],
      suppressed: suppressedOf.get(row.id) ?? [],
      claimedAt: at,
      before: { status: state.status, nextAttemptAt: state.next_attempt_at },
    });
  }
  for (const state of found.values()) {
    if (claims.has(state.id)) continue;
    const due = state.next_attempt_at <= at;
    claims.set(state.id, isSettled(state.status) ? { kind: "settled", status: state.status } : due ? { kind: "over_budget" } : { kind: "not_due", status: state.status, dueAt: state.next_attempt_at });
  }
  for (const id of ids) if (!claims.has(id)) claims.set(id, { kind: "unknown" });
  return claims;
}

/**
 * Undoes claims whose attempts never started (the invocation ran out of time first): each row gets back
 * the status, due time and attempt count its claim found, and loses the "interrupted" event the claim
 * wrote, so the next claim sees what this one saw. Only while the claim is still the attempt's own.
 */
export async function releaseClaims(db: D1Database, claims: Claimed[]): Promise<void> {
  await db.batch(
    claims.flatMap((c) => [
      db
        .prepare(`UPDATE messages SET status = ?, next_attempt_at = ?, attempts = attempts - 1 WHERE ${OWN_CLAIM}`)
        .bind(c.before.status, c.before.nextAttemptAt, c.message.id, c.attempt),
      db.prepare("DELETE FROM events WHERE message_id = ? AND type = 'interrupted' AND at = ? AND changes() > 0").bind(c.message.id, c.claimedAt),
    ]),
  );
}

/** What one attempt settled, to be recorded while it still holds its claim. */
export type AttemptRecord = {
  id: string;
  attempt: number;
  at: string;
  smtpCode?: number;
  /** The transport that carried it; none when it never left (not buildable, the relay unreachable). */
  transport?: TransportName;
  /** What the attempt settled for each recipient it tried. */
  recipients: RecipientUpdate[];
} & (
  | /** Every recipient is settled and the relay took the mail for at least one. */ { kind: "sent"; detail: string }
  | /** Some recipient waits: the claim is released and the next attempt is due at `nextAttemptAt`. */ { kind: "retry"; reason: string; nextAttemptAt: string }
  | /** Every recipient is settled and none took the mail: refused for good, or the retry window ended. */ { kind: "failed"; reason: string }
);

/**
 * Records the outcomes of several attempts in one transaction and releases their claims. Returns, for
 * each, whether the claim was still that attempt's (else nothing of it was written). With `also`, its
 * statements run last in the same transaction and their results come back as `extra`.
 */
export async function recordAttempts(db: D1Database, records: AttemptRecord[], also: D1PreparedStatement[] = []): Promise<{ applied: boolean[]; extra: D1Result[] }> {
  const groups = records.map((r) => [updateRecipients(db, r), updateMessage(db, r), ...recordEvents(db, r), ...suppressBadAddresses(db, r)]);
  const results = await db.batch([...groups.flat(), ...also]);
  let at = 0;
  const applied = groups.map((group) => {
    const mine = (results[at + 1]?.meta.changes ?? 0) > 0;
    at += group.length;
    return mine;
  });
  return { applied, extra: results.slice(at) };
}
/**
 * The recipients' outcomes, written only while the attempt still holds its claim; it must come first,
 * before the message's own guarded update releases the claim.
 */
function updateRecipients(db: D1Database, r: AttemptRecord): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE recipients SET status = u.status, smtp_code = u.code, detail = u.detail, updated_at = ?1
       FROM (SELECT json_extract(value, '$.address') AS address, json_extract(value, '$.status') AS status,
                    json_extract(value, '$.smtpCode') AS code, json_extract(value, '$.detail') AS detail FROM json_each(?2)) AS u
       WHERE recipients.message_id = ?3 AND recipients.address = u.address AND recipients.status IN ('pending', 'deferred')
         AND EXISTS (SELECT 1 FROM messages WHERE id = ?3 AND status = 'sending' AND attempts = ?4)`,
    )
    .bind(r.at, JSON.stringify(r.recipients), r.id, r.attempt);
}

function updateMessage(db: D1Database, r: AttemptRecord): D1PreparedStatement {
  switch (r.kind) {
    case "sent":
      return db.prepare(`UPDATE messages SET status = 'sent', sent_at = ?, updated_at = ?, last_error = NULL WHERE ${OWN_CLAIM}`).bind(r.at, r.at, r.id, r.attempt);
    case "retry":
      return db
        .prepare(`UPDATE messages SET status = 'retrying', last_error = ?, next_attempt_at = ?, updated_at = ? WHERE ${OWN_CLAIM}`)
        .bind(r.reason, r.nextAttemptAt, r.at, r.id, r.attempt);
    case "failed":
      return db.prepare(`UPDATE messages SET status = 'failed', last_error = ?, updated_at = ? WHERE ${OWN_CLAIM}`).bind(r.reason, r.at, r.id, r.attempt);
  }
}

/**
 * The attempt's history, written only if the message's update just before it in the batch applied (each
 * event row only if the statement before it changed a row: the update, or the event before it):
 * "bounced" for each recipient refused for good and "suppressed" for each one on the suppression list;
 * "sent" when the relay took the mail for recipients it had not before (also when others still wait);
 * "deferred" when someone waits for the next attempt; "failed" when nobody was served for another reason
 * than bounces alone, or recipients were given up on (the retry window ended). A bounce whose status says
 * the address is bad also puts it on the key's suppression list.
 */
function recordEvents(db: D1Database, r: AttemptRecord): D1PreparedStatement[] {
  const perRecipient = r.recipients.filter((u) => u.status === "bounced" || u.status === "suppressed");
  const events: NewEvent[] = perRecipient.map((u) => ({ at: r.at, type: u.status === "bounced" ? "bounced" : "suppressed", attempt: r.attempt, smtpCode: u.smtpCode, enhancedCode: u.enhancedCode, detail: u.detail, recipient: u.address }));
  if (r.recipients.some((u) => u.status === "sent")) {
    events.push({ at: r.at, type: "sent", attempt: r.attempt, smtpCode: r.kind === "sent" ? r.smtpCode : undefined, detail: r.kind === "sent" ? r.detail : sentPart(r) });
  }
  if (r.kind === "retry") events.push({ at: r.at, type: "deferred", attempt: r.attempt, smtpCode: r.smtpCode, detail: r.reason });
  // Failed: nobody served for another reason than bounces alone; or served, but some given up on.
  const onlyBounced = r.recipients.length > 0 && r.recipients.every((u) => u.status === "bounced");
  const givenUp = r.kind === "failed" ? !onlyBounced : r.kind === "sent" && r.recipients.some((u) => u.status === "failed");
  if (givenUp) events.push({ at: r.at, type: "failed", attempt: r.attempt, smtpCode: r.smtpCode, detail: r.kind === "sent" ? r.detail : r.reason });
  return events.map((event) => insertEvent(db, r.id, r.transport ? { ...event, transport: r.transport } : event, true));
}

/** Addresses the relay refused for good as bad go on the key's suppression list (only if the bounce was recorded). */
function suppressBadAddresses(db: D1Database, r: AttemptRecord): D1PreparedStatement[] {
  return r.recipients
    .filter((u) => u.status === "bounced" && suppressesAddress(u.enhancedCode))
    .flatMap((u) => suppressFromMessage(db, { messageId: r.id, email: u.address, origin: "bounce", at: r.at, because: "bounced" }));
}

/** What a retrying attempt's "sent" event says: the relay's reply for those it took. */
function sentPart(r: AttemptRecord): string {
  const sent = r.recipients.filter((u) => u.status === "sent");
  return `${sent[0]!.detail} (for ${sent.map((u) => u.address).join(", ")})`.slice(0, 1000);
}

/**
 * Which of these attempts have their outcome recorded (the message left "sending" with the attempt's
 * number still on it): a write may commit and still fail on its way back.
 */
export async function recordedBy(db: D1Database, attempts: { id: string; attempt: number }[]): Promise<boolean[]> {
  const { results } = await db
    .prepare("SELECT id, attempts FROM messages WHERE id IN (SELECT value FROM json_each(?)) AND status != 'sending'")
    .bind(JSON.stringify(attempts.map((a) => a.id)))
    .all<{ id: string; attempts: number }>();
  const recorded = new Map(results.map((row) => [row.id, row.attempts]));
  return attempts.map((a) => recorded.get(a.id) === a.attempt);
}

/**
 * Settles a message that waits for an attempt (none holds a claim) because its retry window ended: every
 * recipient still waiting fails with `reason`; the message is "sent" if an earlier attempt delivered it
 * to someone, else "failed".
 */
export async function closeRetryWindow(db: D1Database, { id, at, reason }: { id: string; at: string; reason: string }): Promise<{ changed: boolean; webhookEvents: DueWebhookEvent[] }> {
  const [, update, , made] = await db.batch([
    db
      .prepare(
        `UPDATE recipients SET status = 'failed', detail = ?1, updated_at = ?2
         WHERE message_id = ?3 AND status IN ('pending', 'deferred') AND EXISTS (SELECT 1 FROM messages WHERE id = ?3 AND status IN ${WAITING_SQL})`,
      )
      .bind(reason, at, id),
    db
      .prepare(
        `UPDATE messages SET
           status = CASE WHEN EXISTS (SELECT 1 FROM recipients WHERE message_id = ?3 AND status IN ${SERVED_SQL}) THEN 'sent' ELSE 'failed' END,
           sent_at = CASE WHEN EXISTS (SELECT 1 FROM recipients WHERE message_id = ?3 AND status IN ${SERVED_SQL}) THEN ?2 END,
           last_error = CASE WHEN EXISTS (SELECT 1 FROM recipients WHERE message_id = ?3 AND status IN ${SERVED_SQL}) THEN NULL ELSE ?1 END,
           updated_at = ?2
         WHERE id = ?3 AND status IN ${WAITING_SQL}`,
      )
      .bind(reason, at, id),
    insertEvent(db, id, { at, type: "failed", detail: reason }, true),
    newWebhookEvents(db, { at, messageIds: [id] }),
  ]);
  return { changed: (update?.meta.changes ?? 0) > 0, webhookEvents: dueEventsOf(made) };
}
