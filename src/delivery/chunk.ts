// A chunk's outcomes made durable: one D1 transaction records the attempts of the messages claimed
// together (and reads back the webhook events they made, queued once it committed), then each job is
// settled — acked, or retried after its backoff. When a transport accepted a mail in the chunk, the write
// is retried until just before the claims end and such a job is never re-queued. Jobs whose message was
// not claimed are settled here too.
import type { Config } from "../config";
import type { DeliveryOutcome } from "../core/outcome";
import { backoffSeconds } from "../core/retry";
import type { Logger } from "../log";
import { recordAttempts, recordedBy, type AttemptRecord, type Claim } from "../store/attempts";
import { newSuppressionEvents } from "../store/suppressions";
import { dueEventsOf, newWebhookEvents, type DueWebhookEvent } from "../store/webhook-events";
import type { OutgoingMail, TransportName } from "../transport/transport";
import type { RelayPacer } from "../pacing/relay-pacer";
import { requeue, type OutboxJob } from "./outbox";
import { enqueueWebhookEvents, type WebhookJob } from "./webhooks";

export interface DeliveryContext {
  db: D1Database;
  outbox: Queue<OutboxJob>;
  /** Where the webhook events the outcomes make are queued. */
  webhooks: Queue<WebhookJob>;
  attachments: R2Bucket;
  /** The send_email binding, for TRANSPORT=cloudflare. */
  email?: SendEmail;
  /** The relay pacers (Durable Objects), for SMTP_MAX_CONNECTIONS and SMTP_MAX_PER_SECOND. */
  pacer?: DurableObjectNamespace<RelayPacer>;
  config: Config;
  log: Logger;
}

export type Claimed = Extract<Claim, { kind: "claimed" }>;

/** How many deliveries of a job wait (1 s apart) for a message row that is not there. */
const UNKNOWN_ROW_PATIENCE = 3;

/** One claimed message of a chunk: what it goes out as, and what came of it. */
export interface Attempt {
  msg: Message<OutboxJob>;
  log: Logger;
  claim: Claimed;
  windowEndsAt: Date;
  /** The recipients still waiting: one a transport accepted before never gets the mail again. */
  attempted: string[];
  chunk: Chunk;
  /** What goes out; built when the lane comes to it. */
  mail?: OutgoingMail;
  outcome?: DeliveryOutcome;
  /** Which transport carried the attempt (none: it never left). */
  transport?: TransportName;
}

/** Messages claimed together, whose outcomes are recorded together. */
export interface Chunk {
  attempts: Attempt[];
  /** Until when a delivered mail's outcome may still be written: just before the claims end. */
  recordBy: number;
  /** When its attempts must be over. */
  deadline: number;
  recording?: boolean;
}

/** D1, the queue or the runtime failed us, not the message: keep the job and back off. */
export function backOff(msg: Message<OutboxJob>, config: Config, log: Logger, error: unknown): void {
  const delaySeconds = backoffSeconds(msg.attempts, config.retry);
  log.error("delivery attempt crashed; will retry", { error, outcome: "error", retry_in_s: delaySeconds });
  msg.retry({ delaySeconds });
}

/** A job whose message this invocation did not claim: nothing to send now, or not yet. */
export async function settleUnclaimed(msg: Message<OutboxJob>, claim: Exclude<Claim, Claimed | { kind: "over_budget" }>, { outbox }: DeliveryContext, log: Logger): Promise<void> {
  switch (claim.kind) {
    case "unknown":
      if (msg.attempts < UNKNOWN_ROW_PATIENCE) {
        // The job and the row are written at the same time: the row may not be there yet. Wait a little;
        // a row that comes later than this is found by the sweep (and a withdrawn one never comes).
        log.info("job put back: its message is not stored yet", { outcome: "waiting_for_row", retry_in_s: 1 });
        return msg.retry({ delaySeconds: 1 });
      }
      log.warn("job dropped: no such message", { outcome: "skipped", status: "unknown" });
      break;
    case "settled":
      log.info("job skipped: message is not pending", { outcome: "skipped", status: claim.status });
      break;
    case "not_due": {
      // Early (a scheduled send, a stale duplicate) or claimed by a live attempt: come back when due.
      const delaySeconds = await requeue(outbox, msg.body, claim.dueAt);
      log.info("job put back: message not due yet", { outcome: "requeued", status: claim.status, retry_in_s: delaySeconds });
      break;
    }
    default: {
      const unreachable: never = claim;
      throw new Error(`unhandled claim ${JSON.stringify(unreachable)}`);
    }
  }
  msg.ack();
}

/**
 * Records a chunk's outcomes in one transaction and settles its jobs. When the relay accepted a mail in
 * the chunk, the write is retried however often D1 fails, until just before the claims end (after that,
 * another attempt could take a claim and send again), and such a job is never re-queued.
 */
export async function recordChunk({ db, webhooks, config, log }: DeliveryContext, chunk: Chunk): Promise<void> {
  const at = new Date();
  const records = chunk.attempts.map((a) => attemptRecord(a, at));
  const anySent = records.some((r) => r.kind === "sent");
  // The webhook events the history makes are read in the same transaction, and queued once it committed.
  const madeEvents = [newWebhookEvents(db, { at: at.toISOString(), messageIds: records.map((r) => r.id) }), newSuppressionEvents(db, at.toISOString())];
  let applied: boolean[] | undefined;
  let made: DueWebhookEvent[] = [];
  let failures = 0;
  for (let pauseMs = 100; !applied; pauseMs = Math.min(pauseMs * 2, 5000)) {
    try {
      const written = await recordAttempts(db, records, madeEvents);
      // (A write that committed but failed on its way back leaves its events to the sweep.)
      made = [...dueEventsOf(written.extra[0]), ...dueEventsOf(written.extra[1])];
      // After a write that committed but failed on its way back, the rows already say what it wrote.
      const recorded = failures > 0 ? await recordedBy(db, records) : [];
      applied = written.applied.map((yes, i) => yes || recorded[i] === true);
    } catch (error) {
      failures += 1;
      if (!anySent || Date.now() + pauseMs >= chunk.recordBy) {
        for (const { msg, log, claim, outcome } of chunk.attempts) {
          if (outcome!.kind !== "sent") backOff(msg, config, log, error);
          else {
            log.error("mail delivered but its status could not be recorded; not re-sending", { error, attempt: claim.attempt, outcome: "sent_unrecorded", tries: failures });
            msg.ack();
          }
        }
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }
  await enqueueWebhookEvents(webhooks, made, log);
  chunk.attempts.forEach(({ msg, log, claim, outcome, transport }, i) => {
    const mine = applied[i]!;
    if (outcome!.kind === "retry" && mine) msg.retry({ delaySeconds: outcome!.delaySeconds });
    else msg.ack(); // done, or the claim had expired and another attempt owns the message now
    log.info("delivery attempt", {
      attempt: claim.attempt,
      outcome: mine ? outcome!.kind : "claim_lost",
      smtp_code: outcome!.code,
      reason: outcome!.kind === "sent" ? undefined : outcome!.reason,
      retry_in_s: outcome!.kind === "retry" ? outcome!.delaySeconds : undefined,
      transport,
      // What API clients read says "the relay"; the operator's log says which.
      relay: outcome!.kind === "sent" || transport === "cloudflare" || !config.smtp ? undefined : `${config.smtp.host}:${config.smtp.port}`,
    });
  });
}

function attemptRecord({ claim, outcome, transport }: Attempt, at: Date): AttemptRecord {
  const o = outcome!;
  const base = { id: claim.message.id, attempt: claim.attempt, at: at.toISOString(), smtpCode: o.code, recipients: o.recipients, transport };
  switch (o.kind) {
    case "sent":
      return { ...base, kind: "sent", detail: o.detail };
    case "retry":
      return { ...base, kind: "retry", reason: o.reason, nextAttemptAt: new Date(at.getTime() + o.delaySeconds * 1000).toISOString() };
    case "failed":
      return { ...base, kind: "failed", reason: o.reason };
  }
}
