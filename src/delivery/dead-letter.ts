// The dead-letter queue consumer: a job lands here when the outbox gave up retrying it. The message
// is marked failed with its last error, logged, and never resent by itself.
import type { Logger } from "../log";
import { getMessage, markFailed } from "../store/messages";
import type { OutboxJob } from "./consumer";

export async function handleDeadLetters(batch: MessageBatch<OutboxJob>, db: D1Database, log: Logger): Promise<void> {
  for (const msg of batch.messages) {
    const id = msg.body?.id;
    const jobLog = log.child({ email_id: id, request_id: msg.body?.request_id });
    try {
      const message = typeof id === "string" ? await getMessage(db, id) : null;
      if (message) {
        const reason = `retries exhausted after ${message.attempts} attempts; last error: ${message.lastError ?? "none recorded"}`;
        const changed = await markFailed(db, message.id, new Date().toISOString(), "dead_lettered", reason);
        jobLog.warn("message dead-lettered", { attempt: message.attempts, outcome: changed ? "failed" : message.status });
      } else {
        jobLog.error("dead letter for an unknown message", { outcome: "unknown" });
      }
      msg.ack();
    } catch (error) {
      jobLog.error("dead letter handling crashed; will retry", { error });
      msg.retry();
    }
  }
}
