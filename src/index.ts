// Composition root: the HTTP app and the queue consumers, wired to the runtime's bindings.
import { createApp } from "./app";
import { getConfig } from "./config";
import { deliverBatch, type OutboxJob } from "./delivery/consumer";
import { handleDeadLetters } from "./delivery/dead-letter";
import { createLogger } from "./log";

export const OUTBOX_QUEUE = "mailroom-outbox";
export const DEAD_LETTER_QUEUE = "mailroom-dead-letter";

const app = createApp();

export default {
  fetch: app.fetch,
  async queue(batch, env) {
    const log = createLogger({ queue: batch.queue });
    if (batch.queue === DEAD_LETTER_QUEUE) return handleDeadLetters(batch, env.DB, log);
    return deliverBatch(batch, env.DB, getConfig(env), log);
  },
} satisfies ExportedHandler<Env, OutboxJob>;
