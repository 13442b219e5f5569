// Composition root: the HTTP app and the queue consumers, wired to the runtime's bindings.
import { createApp } from "./app";
import { ConfigError, getConfig, type Config } from "./config";
import { deliverBatch, type OutboxJob } from "./delivery/consumer";
import { handleDeadLetters } from "./delivery/dead-letter";
import { createLogger } from "./log";

const DEAD_LETTER_QUEUE = "mailroom-dead-letter";

const app = createApp();

export default {
  fetch: app.fetch,
  async queue(batch, env) {
    const log = createLogger({ queue: batch.queue });
    if (batch.queue === DEAD_LETTER_QUEUE) return handleDeadLetters(batch, env.DB, log);
    let config: Config;
    try {
      config = getConfig(env);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      // Nothing can be delivered until the operator fixes the settings; keep every job meanwhile.
      log.error("service is misconfigured; delivery postponed", { problems: error.problems, outcome: "retry" });
      batch.retryAll();
      return;
    }
    return deliverBatch(batch, env.DB, config, log);
  },
} satisfies ExportedHandler<Env, OutboxJob>;
