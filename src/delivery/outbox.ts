// The outbox queue's jobs: they carry only a message id (the row holds the payload and the truth), so
// a job can be sent again at any time; a claim decides which delivery of it may actually send.
import { MAX_QUEUE_DELAY_SECONDS } from "../core/retry";

export interface OutboxJob {
  id: string;
  /** The request that accepted the message, so its delivery logs can be joined to it. */
  request_id?: string;
}

/** Whole seconds from `now` until `dueAt`, within what a queue delay can be (0 to 12 h). */
export function delayUntil(dueAt: string, now = Date.now()): number {
  return Math.min(Math.max(Math.ceil((Date.parse(dueAt) - now) / 1000), 0), MAX_QUEUE_DELAY_SECONDS);
}

/** Puts a fresh job for the message on the outbox, delivered when it is due (or in 12 h, to look again). */
export async function requeue(outbox: Queue<OutboxJob>, job: OutboxJob, dueAt: string): Promise<number> {
  const delaySeconds = delayUntil(dueAt);
  await outbox.send(job, { delaySeconds, contentType: "json" });
  return delaySeconds;
}
