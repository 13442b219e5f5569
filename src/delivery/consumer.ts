// The outbox queue consumer: claims each message of a batch, delivers it over one SMTP session shared by
// the batch, and records the outcome. Only the attempt holding a message's claim may send it, so a
// repeated or concurrent job never sends twice; a job for a message not due yet goes back on the queue
// until it is; once the relay has accepted a mail the job is never re-queued, even if recording that
// fails. Late in its time budget the invocation starts no new transaction and hands the rest back.
import type { Config } from "../config";
import { buildMime, type Envelope, type OutgoingMessage } from "../core/message";
import { classifyAttempt, type DeliveryOutcome } from "../core/outcome";
import { backoffSeconds, retryWindowEndsAt } from "../core/retry";
import { createTimeBudget } from "../core/time-budget";
import type { Logger } from "../log";
import { claimMessage, recordFailure, recordRetry, recordSent, type Claim } from "../store/attempts";
import { requeue, type OutboxJob } from "./outbox";
import { SmtpSession, type SmtpTransaction } from "./smtp";

export interface DeliveryContext {
  db: D1Database;
  outbox: Queue<OutboxJob>;
  config: Config;
  log: Logger;
}

type Claimed = Extract<Claim, { kind: "claimed" }>;

/** A claimed message whose recipients are all settled already: nothing goes to the relay. */
const NOBODY_LEFT: SmtpTransaction = {
  recipients: [],
  end: { ok: false, failure: { kind: "protocol", stage: "rcpt", command: "RCPT TO", message: "no recipient is left to send to" } },
};

export async function deliverBatch(batch: MessageBatch<OutboxJob>, context: DeliveryContext): Promise<void> {
  const { db, config, log } = context;
  const budget = createTimeBudget(Date.now(), config.leaseSeconds);
  let session: SmtpSession | undefined;
  // A relay that cannot be reached once in this batch is not tried again for each remaining message:
  // they get the same transient failure and their own backoff, instead of a connect timeout each.
  let unreachable: SmtpTransaction | undefined;
  let started = 0;
  let handedBack = 0;

  const send = async (message: OutgoingMessage, envelope: Envelope, deadline: number): Promise<SmtpTransaction> => {
    if (envelope.recipients.length === 0) return NOBODY_LEFT;
    if (unreachable) return unreachable;
    if (!session || session.isBroken) {
      const opened = await SmtpSession.open(config.smtp, { deadline });
      if (!opened.ok) return (unreachable = { recipients: [], end: opened });
      session = opened.value;
    }
    return session.send(envelope, buildMime(message), { deadline });
  };

  try {
    for (const msg of batch.messages) {
      if (started > 0 && Date.now() >= budget.startsNoneAfter) {
        msg.retry(); // never claimed, nothing counted: the next invocation takes it at once
        handedBack += 1;
        continue;
      }
      const id = msg.body?.id;
      const msgLog = log.child({ email_id: id, request_id: msg.body?.request_id });
      try {
        const claimedAt = new Date();
        const claim: Claim = typeof id === "string" ? await claimMessage(db, id, { now: claimedAt, leaseMs: config.leaseSeconds * 1000 }) : { kind: "unknown" };
        if (claim.kind !== "claimed") {
          await settleUnclaimed(msg, claim, context, msgLog);
          continue;
        }
        started += 1;
        if (claim.interrupted) msgLog.warn("the previous attempt was interrupted; this one may deliver a duplicate", { attempt: claim.attempt, outcome: "possible_duplicate" });
        // Only the recipients still waiting: one the relay accepted before never gets the mail again.
        const attempted = claim.recipients.filter((r) => r.status === "pending" || r.status === "deferred").map((r) => r.address);
        const envelope = { from: claim.message.from.address, recipients: attempted };
        const transaction = await send(claim.message, envelope, budget.attemptDeadline(claimedAt.getTime()));
        const outcome = classifyAttempt(transaction, {
          attempt: claim.attempt,
          now: new Date(),
          windowEndsAt: retryWindowEndsAt(claim.message, config.retry),
          policy: config.retry,
          attempted,
          sentBefore: claim.recipients.some((r) => r.status === "sent"),
        });
        const applied = await recordOutcomeOnceSent(db, claim, outcome, msgLog);
        if (outcome.kind === "retry" && applied) msg.retry({ delaySeconds: outcome.delaySeconds });
        else msg.ack(); // done, or the claim had expired and another attempt owns the message now
        msgLog.info("delivery attempt", {
          attempt: claim.attempt,
          outcome: applied === false ? "claim_lost" : outcome.kind,
          smtp_code: outcome.code,
          reason: outcome.kind === "sent" ? undefined : outcome.reason,
          retry_in_s: outcome.kind === "retry" ? outcome.delaySeconds : undefined,
        });
      } catch (error) {
        // D1, the queue or the runtime failed us, not the message: keep the job and back off.
        const delaySeconds = backoffSeconds(msg.attempts, config.retry);
        msgLog.error("delivery attempt crashed; will retry", { error, outcome: "error", retry_in_s: delaySeconds });
        msg.retry({ delaySeconds });
      }
    }
  } finally {
    await session?.close();
  }
  if (handedBack > 0) log.warn("time budget used up; the rest of the batch goes back to the queue", { handed_back: handedBack, started });
}

/** A job whose message this invocation did not claim: nothing to send now, or not yet. */
async function settleUnclaimed(msg: Message<OutboxJob>, claim: Exclude<Claim, Claimed>, { outbox }: DeliveryContext, log: Logger): Promise<void> {
  switch (claim.kind) {
    case "unknown":
    case "settled":
      log.info("job skipped: message is not pending", { outcome: "skipped", status: claim.kind === "settled" ? claim.status : "unknown" });
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
 * Records the outcome and releases the claim; returns whether the claim was still this attempt's. For a
 * mail the relay accepted, a failed write is retried once, then logged, never re-sent from here.
 */
async function recordOutcomeOnceSent(db: D1Database, claim: Claimed, outcome: DeliveryOutcome, log: Logger): Promise<boolean | undefined> {
  try {
    return await recordOutcome(db, claim, outcome);
  } catch (error) {
    if (outcome.kind !== "sent") throw error; // nothing was delivered: the catch-all retries the job
    try {
      return await recordOutcome(db, claim, outcome);
    } catch (again) {
      log.error("mail delivered but its status could not be recorded; not re-sending", { error: again, attempt: claim.attempt, outcome: "sent_unrecorded" });
      return undefined;
    }
  }
}

async function recordOutcome(db: D1Database, { message, attempt }: Claimed, outcome: DeliveryOutcome): Promise<boolean> {
  const at = new Date();
  const base = { id: message.id, attempt, at: at.toISOString(), smtpCode: outcome.code, recipients: outcome.recipients };
  switch (outcome.kind) {
    case "sent":
      return recordSent(db, { ...base, detail: outcome.detail });
    case "retry":
      return recordRetry(db, { ...base, reason: outcome.reason, nextAttemptAt: new Date(at.getTime() + outcome.delaySeconds * 1000).toISOString() });
    case "failed":
      return recordFailure(db, { ...base, reason: outcome.reason });
    default: {
      const unreachable: never = outcome;
      throw new Error(`unhandled outcome ${JSON.stringify(unreachable)}`);
    }
  }
}
