// Composition root: the HTTP app, the queue consumers (outbox, webhooks, their dead letters), the email
// handler (reports that come back to the bounce address) and the
// minute-by-minute sweep (overdue messages and webhook events back on their queues, expired idempotency
// keys forgotten), wired to the runtime's bindings.
import { createApp } from "./app";
import { ConfigError, DEFAULT_RETRY, getConfig, type Config } from "./config";
import { backoffSeconds } from "./core/retry";
import { deliverBatch } from "./delivery/consumer";
import { handleDeadLetters } from "./delivery/dead-letter";
import type { OutboxJob } from "./delivery/outbox";
import { handleReport } from "./delivery/reports";
import { sweep } from "./delivery/sweeper";
import { deliverWebhookBatch, sweepWebhookEvents, type WebhookJob } from "./delivery/webhooks";
import { createLogger, type Logger } from "./log";
import { applyRetention } from "./retention";
import { purgeExpiredKeys } from "./store/idempotency";
import { createUsage, meterBatch, meterBindings, usageFields, type Usage } from "./usage";

/** The relay pacer (one Durable Object per relay), for SMTP_MAX_CONNECTIONS and SMTP_MAX_PER_SECOND. */
export { RelayPacer } from "./pacing/relay-pacer";

const DEAD_LETTER_QUEUE = "mailroom-dead-letter";
const WEBHOOK_QUEUE = "mailroom-webhooks";
const WEBHOOK_DEAD_LETTER_QUEUE = "mailroom-webhooks-dead-letter";

const app = createApp();

/** The settings, or undefined (logged) when they are wrong: the operator has to fix them first. */
function readConfig(env: Env, log: Logger): Config | undefined {
  try {
    return getConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    log.error("service is misconfigured; delivery postponed", { problems: error.problems, outcome: "retry" });
    return undefined;
  }
}

async function handleBatch(batch: MessageBatch<OutboxJob | WebhookJob>, env: Env, usage: Usage, log: Logger): Promise<void> {
  const config = readConfig(env, log);
  const { DB: db, OUTBOX: outbox, ATTACHMENTS: attachments, WEBHOOKS: webhooks } = meterBindings(env, usage);
  if (batch.queue === WEBHOOK_DEAD_LETTER_QUEUE) {
    // The event's row still says it is to be delivered: the sweep puts it back on the queue.
    log.warn("webhook jobs dead-lettered; the sweep delivers their events", { messages: batch.messages.length });
    return batch.ackAll();
  }
  if (batch.queue === DEAD_LETTER_QUEUE) return handleDeadLetters(batch as MessageBatch<OutboxJob>, { db, outbox, webhooks, config, log });
  if (!config) {
    // Nothing can be delivered until the settings are fixed; keep every job meanwhile, backing off.
    const attempts = Math.max(...batch.messages.map((m) => m.attempts));
    batch.retryAll({ delaySeconds: backoffSeconds(attempts, DEFAULT_RETRY) });
    return;
  }
  if (batch.queue === WEBHOOK_QUEUE) return deliverWebhookBatch(batch as MessageBatch<WebhookJob>, { db, webhooks, config, log });
  return deliverBatch(batch as MessageBatch<OutboxJob>, { db, outbox, webhooks, attachments, email: env.EMAIL, pacer: env.PACER, config, log });
}

export default {
  fetch: app.fetch,
  async queue(batch, env) {
    const log = createLogger({ queue: batch.queue });
    const usage = createUsage();
    const metered = meterBatch(batch, usage);
    let failed = false;
    try {
      await handleBatch(metered.batch, env, usage, log);
    } catch (error) {
      failed = true; // the runtime retries every message of the batch
      throw error;
    } finally {
      metered.settle({ failed });
      log.info("queue batch", { messages: batch.messages.length, ...usageFields(usage) });
    }
  },
  async email(message, env) {
    const log = createLogger({ handler: "email" });
    let config: Config | undefined;
    try {
      config = getConfig(env);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
    }
    await handleReport(message, { db: env.DB, webhooks: env.WEBHOOKS, config, log });
  },
  async scheduled(_controller, env) {
    const log = createLogger({ task: "sweep" });
    const config = readConfig(env, log);
    if (config) {
      await sweep({ db: env.DB, outbox: env.OUTBOX, config, log });
      // Its failure must not stop the rest of the sweep.
      await sweepWebhookEvents({ db: env.DB, webhooks: env.WEBHOOKS, config, log }).catch((error) => log.error("webhook sweep failed; the next one tries again", { error }));
      await applyRetention({ db: env.DB, attachments: env.ATTACHMENTS, config, log });
    }
    await purgeExpiredKeys(env.DB, new Date());
  },
} satisfies ExportedHandler<Env, OutboxJob | WebhookJob>;
