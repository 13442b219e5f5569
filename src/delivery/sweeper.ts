// The sweeper, run by a Cron Trigger every minute: the second, independent way to reach every pending
// message. It puts back on the outbox each row whose next attempt (or whose claim's expiry) is overdue
// by more than a grace: a job lost with a restarted `wrangler dev`, a rollback that failed, a dead
// letter that vanished, a Worker killed mid-attempt. A row it requeued is left alone for another grace;
// if its job was not lost after all, the claim lets only one of the two send.
import type { Config } from "../config";
import type { Logger } from "../log";
import { findOverdue, markSwept } from "../store/overdue";
import type { OutboxJob } from "./outbox";

/** Queues' sendBatch takes at most 100 messages. */
const BATCH = 100;
/** At most this many batches a sweep; the next sweep, a minute later, takes the rest. */
const MAX_BATCHES = 10;

export interface SweepContext {
  db: D1Database;
  outbox: Queue<OutboxJob>;
  config: Config;
  log: Logger;
}

/** Returns how many messages went back on the outbox. */
export async function sweep({ db, outbox, config, log }: SweepContext, now = new Date()): Promise<number> {
  const cutoff = new Date(now.getTime() - config.sweepGraceSeconds * 1000).toISOString();
  let requeued = 0;
  for (let round = 0; round < MAX_BATCHES; round++) {
    const ids = await findOverdue(db, { cutoff, limit: BATCH });
    if (ids.length === 0) break;
    await outbox.sendBatch(ids.map((id) => ({ body: { id }, contentType: "json" as const })));
    await markSwept(db, ids, now.toISOString());
    requeued += ids.length;
    if (ids.length < BATCH) break;
  }
  // Nothing overdue is the normal case and not worth a line a minute.
  if (requeued > 0) log.warn("sweep put overdue messages back on the outbox", { outcome: "requeued", requeued });
  return requeued;
}
