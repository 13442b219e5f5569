// Recording what a report said about a message's recipients, in one D1 transaction: the report (by its
// digest, so the same one twice is recorded once), each recipient's new status, and a history event for
// each change, whose webhook events the trigger makes in the same transaction; a complaint, or a bounce whose
// status says the address is bad, also puts the address on the key's suppression list (when `suppress`).
// Only a recipient the relay took can be reported on: delivered and bounced move it from sent (bounced also
// from delivered), complained from sent or delivered; a delay or an undetermined bounce changes no status and
// is an event only.
import type { RecipientStatus } from "../core/outcome";
import { insertEvent, type EventType } from "./messages";
import { suppressesAddress } from "../core/suppression";
import { newSuppressionEvents, suppressFromMessage } from "./suppressions";
import { dueEventsOf, newWebhookEvents, type DueWebhookEvent } from "./webhook-events";

/** The kinds of report that are recorded (the others change nothing and are not kept). */
export type ReportKind = "delivery_status" | "complaint" | "undetermined";

export interface RecipientReport {
  address: string;
  /** What the report makes of the recipient. */
  outcome: "bounced" | "delayed" | "delivered" | "complained" | "undetermined";
  smtpCode?: number;
  enhancedCode?: string;
  detail: string;
}

/** The status each outcome moves a recipient to, from which statuses; none: an event only. */
const TRANSITIONS: Record<RecipientReport["outcome"], { to: RecipientStatus; from: string } | undefined> = {
  bounced: { to: "bounced", from: "status IN ('sent', 'delivered')" },
  delivered: { to: "delivered", from: "status = 'sent'" },
  complained: { to: "complained", from: "status IN ('sent', 'delivered')" },
  delayed: undefined,
  undetermined: undefined,
};

const EVENT_TYPE: Record<RecipientReport["outcome"], EventType> = {
  bounced: "bounced",
  delayed: "deferred",
  delivered: "delivered",
  complained: "complained",
  undetermined: "bounced",
};

/** The message's recipients, to attribute a report to. */
export async function recipientsOf(db: D1Database, messageId: string): Promise<{ address: string; status: RecipientStatus }[]> {
  const { results } = await db.prepare("SELECT address, status FROM recipients WHERE message_id = ? ORDER BY position").bind(messageId).all<{ address: string; status: RecipientStatus }>();
  return results;
}

/**
 * Records a report's outcomes for `messageId`. Returns whether the report was new (false: the same report
 * was recorded before, and nothing changed now) and the webhook events it made.
 */
export async function recordReport(
  db: D1Database,
  { messageId, digest, kind, at, recipients, suppress }: { messageId: string; digest: string; kind: ReportKind; at: string; recipients: RecipientReport[]; suppress: boolean },
): Promise<{ recorded: boolean; webhookEvents: DueWebhookEvent[] }> {
  const isNew = "EXISTS (SELECT 1 FROM received_reports WHERE message_id = ?1 AND digest = ?2 AND received_at = ?3)";
  const statements: D1PreparedStatement[] = [
    db.prepare("INSERT OR IGNORE INTO received_reports (message_id, digest, kind, received_at) VALUES (?, ?, ?, ?)").bind(messageId, digest, kind, at),
  ];
  for (const r of recipients) {
    const event = { at, type: EVENT_TYPE[r.outcome], smtpCode: r.smtpCode, enhancedCode: r.enhancedCode, detail: r.detail, recipient: r.address };
    const transition = TRANSITIONS[r.outcome];
    if (transition) {
      statements.push(
        db
          .prepare(`UPDATE recipients SET status = ?4, smtp_code = ?5, detail = ?6, updated_at = ?3 WHERE message_id = ?1 AND address = ?7 AND ${transition.from} AND ${isNew}`)
          .bind(messageId, digest, at, transition.to, r.smtpCode ?? null, r.detail, r.address),
        // Only if the status changed: a second report of a bounce makes no second event.
        insertEvent(db, messageId, event, true),
      );
    } else {
      statements.push(insertEventWhereNew(db, messageId, event, digest));
    }
  }
  // A complaint, and a bounce whose status says the address is bad, put the address on the key's list.
  for (const r of suppress ? recipients : []) {
    if (r.outcome === "complained") statements.push(...suppressFromMessage(db, { messageId, email: r.address, origin: "complaint", at, because: "complained" }));
    if (r.outcome === "bounced" && suppressesAddress(r.enhancedCode)) statements.push(...suppressFromMessage(db, { messageId, email: r.address, origin: "bounce", at, because: "bounced" }));
  }
  statements.push(newWebhookEvents(db, { at, messageIds: [messageId] }), newSuppressionEvents(db, at));
  const results = await db.batch(statements);
  return { recorded: (results[0]?.meta.changes ?? 0) > 0, webhookEvents: [...dueEventsOf(results.at(-2)), ...dueEventsOf(results.at(-1))] };
}

/** A history event written only when the report was new in this transaction. */
function insertEventWhereNew(db: D1Database, messageId: string, event: Parameters<typeof insertEvent>[2], digest: string): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO events (message_id, seq, at, type, attempt, smtp_code, detail, recipient, enhanced_code)
       SELECT ?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE message_id = ?1), ?2, ?3, NULL, ?4, ?5, ?6, ?7
       WHERE EXISTS (SELECT 1 FROM received_reports WHERE message_id = ?1 AND digest = ?8 AND received_at = ?2)`,
    )
    .bind(messageId, event.at, event.type, event.smtpCode ?? null, event.detail ?? null, event.recipient ?? null, event.enhancedCode ?? null, digest);
}
