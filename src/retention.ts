// Retention, run by the scheduled handler: a message's bodies and attachments are kept RETENTION_DAYS
// after it was accepted, and then deleted once it is settled (a message still waiting to be sent keeps them until it
// is). What happened to it — status, events, recipients, subject — stays.
import type { Config } from "./config";
import type { Logger } from "./log";
import { clearOldBodies } from "./store/retention";

/** Rows cleared per statement, and statements per run: the next run, a minute later, takes the rest. */
const BATCH = 500;
const MAX_BATCHES = 10;

export async function applyRetention({ db, config, log }: { db: D1Database; config: Config; log: Logger }, now = new Date()): Promise<number> {
  const cutoff = new Date(now.getTime() - config.retentionDays * 86_400_000).toISOString();
  let cleared = 0;
  for (let round = 0; round < MAX_BATCHES; round++) {
    const changed = await clearOldBodies(db, { cutoff, limit: BATCH });
    cleared += changed;
    if (changed < BATCH) break;
  }
  if (cleared > 0) log.info("retention: deleted the bodies and attachments of old settled messages", { outcome: "bodies_deleted", messages: cleared, retention_days: config.retentionDays });
  return cleared;
}
