// Retention, run by the scheduled handler: a message's bodies and attachments are kept RETENTION_DAYS
// after it was accepted, and then deleted once it is settled (a message still waiting to be sent keeps them until it
// is). What happened to it — status, events, recipients, subject — stays. Attachments in R2 are deleted
// before the rows that point at them are cleared, so a failure leaves nothing unreachable: the next run
// finds the same messages again. Webhook events delivered or failed are deleted RETENTION_DAYS after they
// happened, with their attempts.
import type { Config } from "./config";
import type { Logger } from "./log";
import { deleteAttachments } from "./store/attachment-objects";
import { clearBodies, findExpiredBodies } from "./store/retention";
import { deleteOldWebhookEvents } from "./store/webhook-events";

/** Messages cleared per round (at most R2's 1000 keys per delete), and rounds per run: the next run, a minute later, takes the rest. */
const BATCH = 500;
const MAX_BATCHES = 10;

export async function applyRetention(
  { db, attachments, config, log }: { db: D1Database; attachments: R2Bucket; config: Config; log: Logger },
  now = new Date(),
): Promise<number> {
  const cutoff = new Date(now.getTime() - config.retentionDays * 86_400_000).toISOString();
  let cleared = 0;
  for (let round = 0; round < MAX_BATCHES; round++) {
    const expired = await findExpiredBodies(db, { cutoff, limit: BATCH });
    await deleteAttachments(attachments, expired.flatMap((m) => (m.attachmentsKey ? [m.attachmentsKey] : [])));
    if (expired.length > 0) cleared += await clearBodies(db, expired.map((m) => m.id));
    if (expired.length < BATCH) break;
  }
  if (cleared > 0) log.info("retention: deleted the bodies and attachments of old settled messages", { outcome: "bodies_deleted", messages: cleared, retention_days: config.retentionDays });
  let events = 0;
  for (let round = 0, deleted = BATCH; round < MAX_BATCHES && deleted === BATCH; round++) events += deleted = await deleteOldWebhookEvents(db, { cutoff, limit: BATCH });
  if (events > 0) log.info("retention: deleted old settled webhook events", { outcome: "webhook_events_deleted", webhook_events: events, retention_days: config.retentionDays });
  return cleared;
}
