// The dead-letter queue consumer: a job lands here when the outbox gave up retrying it. The message
// is marked failed with its last error, logged, and never resent by itself.
import type { Logger } from "../log";
import { getMessage, markFailed } from "../store/messages";
import type { OutboxJob } from "./consumer";

export async function handleDeadLetters(batch: MessageBatch<OutboxJob>, db: D1Database, log: Logger): Promise<void> {
  for (const msg of batch.messages) {
    const id = msg.body?.id;
    try {
      const message = typeof id === "string" ? await getMessage(db, id) : null;
      if (message) {
        const reason = `retries exhausted after ${message.attempts} attempts; last error: ${message.lastError ?? "none recorded"}`;
        const changed = await markFailed(db, message.id, new Date().toISOString(), "dead_lettered", reason);
        log.warn("message dead-lettered", { email_id: id, attempt: message.attempts, outcome: changed ? "failed" : message.status });
      } else {
        log.error("dead letter for an unknown message", { email_id: id, outcome: "unknown" });
      }
      msg.ack();
    } catch (error) {
      log.error("dead letter handling crashed; will retry", { email_id: id, error });
      msg.retry();
    }
  }
}
