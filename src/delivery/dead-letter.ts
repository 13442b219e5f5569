// The dead-letter queue consumer: a job lands here when the outbox used up its redeliveries. That says
// nothing about the message, whose retry window alone decides: still open, and the message goes back
// on the outbox for its next due time; over, and a message waiting for an attempt is settled: every
// recipient still waiting fails, and so does the message unless an earlier attempt reached someone.
import type { Config } from "../config";
import { DEFAULT_RETRY } from "../config";
import { backoffSeconds, retryWindowEndsAt, windowEndedReason } from "../core/retry";
import type { Logger } from "../log";
import { closeRetryWindow } from "../store/attempts";
import { getMessage, isSettled } from "../store/messages";
import { requeue, type OutboxJob } from "./outbox";
import { enqueueWebhookEvents, type WebhookJob } from "./webhooks";

export interface DeadLetterContext {
  db: D1Database;
  outbox: Queue<OutboxJob>;
  webhooks: Queue<WebhookJob>;
  /** Undefined when the settings cannot be read: then nothing is failed, every job goes back. */
  config: Config | undefined;
  log: Logger;
}

export async function handleDeadLetters(batch: MessageBatch<OutboxJob>, { db, outbox, webhooks, config, log }: DeadLetterContext): Promise<void> {
  for (const msg of batch.messages) {
    const id = msg.body?.id;
    const jobLog = log.child({ email_id: id, request_id: msg.body?.request_id });
    try {
      const message = typeof id === "string" ? await getMessage(db, id) : null;
      if (!message) {
        jobLog.error("dead letter for an unknown message", { outcome: "unknown" });
      } else if (isSettled(message.status)) {
        jobLog.info("dead letter for a settled message", { outcome: "skipped", status: message.status });
      } else if (config && message.status !== "sending" && Date.now() >= retryWindowEndsAt(message, config.retry).getTime()) {
        const reason = windowEndedReason(config.retry, message.attempts, message.lastError);
        const { changed, webhookEvents } = await closeRetryWindow(db, { id: message.id, at: new Date().toISOString(), reason });
        await enqueueWebhookEvents(webhooks, webhookEvents, jobLog);
        jobLog.warn("retry window ended; recipients still waiting failed", { attempt: message.attempts, outcome: changed ? "window_closed" : "skipped" });
      } else {
        const delaySeconds = await requeue(outbox, msg.body, message.nextAttemptAt);
        jobLog.info("dead letter put back on the outbox", { attempt: message.attempts, outcome: "requeued", retry_in_s: delaySeconds });
      }
      msg.ack();
    } catch (error) {
      const delaySeconds = backoffSeconds(msg.attempts, config?.retry ?? DEFAULT_RETRY);
      jobLog.error("dead letter handling crashed; will retry", { error, retry_in_s: delaySeconds });
      msg.retry({ delaySeconds });
    }
  }
}
