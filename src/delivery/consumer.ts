// The outbox queue consumer: delivers each message of a batch over one SMTP session and records the
// outcome. Delivery is at-least-once: a message already sent, failed or canceled is acknowledged and
// skipped, so a redelivered job never sends twice once its result is recorded; and once the relay has
// accepted a mail, the job is never re-queued, even if recording that fails.
import type { Config } from "../config";
import { buildEnvelope, buildMime, type OutgoingMessage } from "../core/message";
import { classifyAttempt, type DeliveryOutcome } from "../core/retry";
import type { Logger } from "../log";
import { beginAttempt, getMessage, markFailed, markRetrying, markSent } from "../store/messages";
import { SmtpSession, type SmtpAccepted, type SmtpResult } from "./smtp";

export interface OutboxJob {
  id: string;
  /** The request that accepted the message, so its delivery logs can be joined to it. */
  request_id?: string;
}

export async function deliverBatch(batch: MessageBatch<OutboxJob>, db: D1Database, config: Config, log: Logger): Promise<void> {
  let session: SmtpSession | undefined;
  // A relay that cannot be reached once in this batch is not tried again for each remaining message:
  // they get the same transient failure and their own backoff, instead of a connect timeout each.
  let unreachable: SmtpResult<never> | undefined;

  const send = async (message: OutgoingMessage): Promise<SmtpResult<SmtpAccepted>> => {
    if (unreachable) return unreachable;
    if (!session || session.isBroken) {
      const opened = await SmtpSession.open(config.smtp);
      if (!opened.ok) return (unreachable = opened);
      session = opened.value;
    }
    return session.send(buildEnvelope(message), buildMime(message));
  };

  try {
    for (const msg of batch.messages) {
      const id = msg.body?.id;
      const msgLog = log.child({ email_id: id, request_id: msg.body?.request_id });
      try {
        const message = typeof id === "string" ? await getMessage(db, id) : null;
        const attempt = message ? await beginAttempt(db, message.id, new Date().toISOString()) : null;
        if (!message || attempt === null) {
          // Unknown id, or already sent/failed/canceled: a redelivery or a stale job; nothing to send.
          msgLog.info("job skipped: message is not pending", { outcome: "skipped", status: message?.status ?? "unknown" });
          msg.ack();
          continue;
        }
        const outcome = classifyAttempt(await send(message), attempt, config.retry);
        await recordOutcomeOnceSent(db, message.id, attempt, outcome, msgLog);
        settle(msg, outcome);
        msgLog.info("delivery attempt", {
          attempt,
          outcome: outcome.kind,
          smtp_code: outcome.code,
          reason: outcome.kind === "sent" ? undefined : outcome.reason,
          retry_in_s: outcome.kind === "retry" ? outcome.delaySeconds : undefined,
        });
      } catch (error) {
        // D1 or the runtime failed us: keep the job, its next delivery tries again.
        msgLog.error("delivery attempt crashed; will retry", { error, outcome: "error" });
        msg.retry({ delaySeconds: config.retry.baseDelaySeconds });
      }
    }
  } finally {
    await session?.close();
  }
}

/** Records the outcome; for a mail the relay accepted, a failed write is retried once, then logged, never re-sent. */
async function recordOutcomeOnceSent(db: D1Database, id: string, attempt: number, outcome: DeliveryOutcome, log: Logger): Promise<void> {
  try {
    await recordOutcome(db, id, attempt, outcome);
  } catch (error) {
    if (outcome.kind !== "sent") throw error; // nothing was delivered: the catch-all retries the job
    try {
      await recordOutcome(db, id, attempt, outcome);
    } catch (again) {
      log.error("mail delivered but its status could not be recorded; not re-sending", { error: again, attempt, outcome: "sent_unrecorded" });
    }
  }
}

async function recordOutcome(db: D1Database, id: string, attempt: number, outcome: DeliveryOutcome): Promise<void> {
  const at = new Date().toISOString();
  switch (outcome.kind) {
    case "sent":
      return markSent(db, id, at, attempt, outcome.code, outcome.detail);
    case "retry":
      return markRetrying(db, id, at, attempt, outcome.reason, outcome.code);
    case "failed":
      await markFailed(db, id, at, "failed", outcome.reason, attempt, outcome.code);
      return;
    default: {
      const unreachable: never = outcome;
      throw new Error(`unhandled outcome ${JSON.stringify(unreachable)}`);
    }
  }
}

function settle(msg: Message<OutboxJob>, outcome: DeliveryOutcome): void {
  if (outcome.kind === "retry") msg.retry({ delaySeconds: outcome.delaySeconds });
  else msg.ack();
}
