// The outbox queue consumer: claims each message of a batch, delivers it over one SMTP session shared by
// the batch, and records the outcome. Only the attempt holding a message's claim may send it, so a
// repeated or concurrent job never sends twice; a job for a message not due yet goes back on the queue
// until it is; once the relay has accepted a mail, its outcome is recorded for as long as the claim
// lasts and the job is never re-queued. The batch is spread over several SMTP sessions at once (lanes,
// SMTP_SESSIONS); late in its time budget the invocation starts no new transaction.
import type { Config } from "../config";
import { buildMime, type Envelope, type OutgoingMessage } from "../core/message";
import { classifyAttempt, type DeliveryOutcome } from "../core/outcome";
import { backoffSeconds, retryWindowEndsAt } from "../core/retry";
import { createTimeBudget, type TimeBudget } from "../core/time-budget";
import type { Logger } from "../log";
import { claimMessage, isSentBy, recordFailure, recordRetry, recordSent, type Claim } from "../store/attempts";
import { requeue, type OutboxJob } from "./outbox";
import { SmtpSession, type SmtpFailure, type SmtpTransaction } from "./smtp";

export interface DeliveryContext {
  db: D1Database;
  outbox: Queue<OutboxJob>;
  config: Config;
  log: Logger;
}

type Claimed = Extract<Claim, { kind: "claimed" }>;

/** How many deliveries of a job wait (1 s apart) for a message row that is not there. */
const UNKNOWN_ROW_PATIENCE = 3;

const ended = (failure: SmtpFailure): SmtpTransaction => ({ recipients: [], end: { ok: false, failure } });

/** A claimed message whose recipients are all settled already: nothing goes to the relay. */
const NOBODY_LEFT = ended({ kind: "protocol", stage: "rcpt", command: "RCPT TO", message: "no recipient is left to send to" });

export async function deliverBatch(batch: MessageBatch<OutboxJob>, context: DeliveryContext): Promise<void> {
  const { config, log } = context;
  const run: BatchRun = {
    context,
    budget: createTimeBudget(Date.now(), config.leaseSeconds),
    waiting: [...batch.messages],
    lanes: [],
    started: 0,
    handedBack: 0,
    // Once the first session is up, more join (up to SMTP_SESSIONS), each taking the next message as it
    // is free. Before that, one lane finds out whether the relay can be reached at all: if not, every
    // message gets that transient failure (and its own backoff) instead of a connect timeout each.
    firstSessionOpened: () => {
      run.firstSessionOpened = () => {};
      const extra = Math.min(config.smtpSessions, batch.messages.length) - 1;
      for (let i = 0; i < extra && run.waiting.length > 0; i++) run.lanes.push(joinLane(run));
    },
  };
  run.lanes.push(runLane(run, undefined));
  while (run.lanes.length > 0) await Promise.all(run.lanes.splice(0));
  if (run.handedBack > 0) log.warn("time budget used up; the rest of the batch goes back to the queue", { handed_back: run.handedBack, started: run.started });
}

interface BatchRun {
  context: DeliveryContext;
  budget: TimeBudget;
  /** Messages no lane has taken yet. */
  waiting: Message<OutboxJob>[];
  lanes: Promise<void>[];
  unreachable?: SmtpTransaction;
  started: number;
  handedBack: number;
  firstSessionOpened: () => void;
}

/** A further lane: it opens its session first, and leaves its share to the others if it cannot. */
async function joinLane(run: BatchRun): Promise<void> {
  const opened = await SmtpSession.open(run.context.config.smtp, { deadline: run.budget.attemptDeadline(Date.now()) });
  // A relay that takes fewer connections than asked for: the lanes already running carry on.
  if (opened.ok) await runLane(run, opened.value);
  else run.context.log.info("an extra SMTP session could not be opened; the others carry on", { reason: opened.failure.message });
}

/** One SMTP session working through the batch's messages, one transaction at a time. */
async function runLane(run: BatchRun, opened: SmtpSession | undefined): Promise<void> {
  const { db, config, log } = run.context;
  let session = opened;
  const send = async (message: OutgoingMessage, envelope: Envelope, deadline: number): Promise<SmtpTransaction> => {
    if (envelope.recipients.length === 0) return NOBODY_LEFT;
    let mime: string;
    try {
      mime = buildMime(message);
    } catch (error) {
      return ended({ kind: "content", stage: "message", command: "(building the message)", message: `the message could not be built: ${String(error)}`.slice(0, 1000) });
    }
    if (run.unreachable) return run.unreachable;
    if (!session || session.isBroken) {
      const reopened = await SmtpSession.open(config.smtp, { deadline });
      if (!reopened.ok) return (run.unreachable = { recipients: [], end: reopened }); // the rest need not wait for it too
      session = reopened.value;
      run.firstSessionOpened();
    }
    return session.send(envelope, mime, { deadline });
  };

  try {
    for (let msg = run.waiting.shift(); msg; msg = run.waiting.shift()) {
      if (run.started > 0 && Date.now() >= run.budget.startsNoneAfter) {
        msg.retry(); // never claimed, nothing counted: the next invocation takes it at once
        run.handedBack += 1;
        continue;
      }
      const id = msg.body?.id;
      const msgLog = log.child({ email_id: id, request_id: msg.body?.request_id });
      try {
        const claimedAt = Date.now();
        const claim: Claim = typeof id === "string" ? await claimMessage(db, id, { now: new Date(claimedAt), leaseMs: config.leaseSeconds * 1000 }) : { kind: "unknown" };
        if (claim.kind !== "claimed") {
          await settleUnclaimed(msg, claim, run.context, msgLog);
          continue;
        }
        run.started += 1;
        const windowEndsAt = retryWindowEndsAt(claim.message, config.retry);
        // Only the recipients still waiting: one the relay accepted before never gets the mail again.
        const attempted = claim.recipients.filter((r) => r.status === "pending" || r.status === "deferred").map((r) => r.address);
        let transaction: SmtpTransaction;
        if (claim.interrupted && Date.now() >= windowEndsAt.getTime()) {
          // An attempt that died after the window ended gets no successor, so a message whose attempts
          // always die (too large, too slow) cannot loop forever.
          transaction = ended({ kind: "connection", stage: "connect", command: "(previous attempt)", message: `attempt ${claim.attempt - 1} did not finish` });
        } else {
          if (claim.interrupted) msgLog.warn("the previous attempt was interrupted; this one may deliver a duplicate", { attempt: claim.attempt, outcome: "possible_duplicate" });
          transaction = await send(claim.message, { from: claim.message.from.address, recipients: attempted }, run.budget.attemptDeadline(claimedAt));
        }
        const outcome = classifyAttempt(transaction, {
          attempt: claim.attempt,
          now: new Date(),
          windowEndsAt,
          policy: config.retry,
          attempted,
          sentBefore: claim.recipients.some((r) => r.status === "sent"),
        });
        const applied = await recordOutcomeOnceSent(db, claim, outcome, { log: msgLog, recordBy: run.budget.recordBy(claimedAt) });
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
}

/** A job whose message this invocation did not claim: nothing to send now, or not yet. */
async function settleUnclaimed(msg: Message<OutboxJob>, claim: Exclude<Claim, Claimed>, { outbox }: DeliveryContext, log: Logger): Promise<void> {
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
 * Records the outcome and releases the claim; returns whether the claim was still this attempt's. A mail
 * the relay accepted is recorded however often D1 fails, until just before the claim ends (after that,
 * another attempt could take the claim and send again), and never re-sent from here.
 */
async function recordOutcomeOnceSent(
  db: D1Database,
  claim: Claimed,
  outcome: DeliveryOutcome,
  { log, recordBy }: { log: Logger; recordBy: number },
): Promise<boolean | undefined> {
  if (outcome.kind !== "sent") return recordOutcome(db, claim, outcome); // nothing delivered: a failure here retries the job
  let failures = 0;
  for (let pauseMs = 100; ; pauseMs = Math.min(pauseMs * 2, 5000)) {
    try {
      // After a write that committed but failed on its way back, the row already says sent.
      return (await recordOutcome(db, claim, outcome)) || (failures > 0 && (await isSentBy(db, claim.message.id, claim.attempt)));
    } catch (error) {
      failures += 1;
      if (Date.now() + pauseMs >= recordBy) {
        log.error("mail delivered but its status could not be recorded; not re-sending", { error, attempt: claim.attempt, outcome: "sent_unrecorded", tries: failures });
        return undefined;
      }
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
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
