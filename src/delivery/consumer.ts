// The outbox queue consumer: claims the messages of a batch, delivers them over a few SMTP sessions at
// once, and records the outcomes. Only the attempt holding a message's claim may send it, so a repeated
// or concurrent job never sends twice; a job for a message not due yet goes back on the queue until it
// is; once the relay has accepted a mail, its outcome is recorded for as long as the claim lasts and the
// job is never re-queued. Each session (a lane) claims a few messages at a time in one D1 round trip,
// pipelines them (the next mail's envelope goes out behind the previous mail's final dot, QUIT behind the
// last one) and records each chunk's outcomes in one D1 transaction while it sends the next; a chunk is at
// most 10 messages and about 2 MB of rows, so what an invocation holds is bounded by bytes, not by count. Late in its
// time budget the invocation claims nothing more and hands the rest back to the queue. A message whose
// attachments are in R2 is read and built only when its lane comes to it, so a lane holds two at most.
import type { Config } from "../config";
import { buildMime, type Envelope, type OutgoingMessage } from "../core/message";
import { signMessage } from "../core/dkim";
import { classifyAttempt, type DeliveryOutcome } from "../core/outcome";
import { envelopeIdFor, returnPathFor } from "../core/return-path";
import { backoffSeconds, retryWindowEndsAt } from "../core/retry";
import { createTimeBudget, type TimeBudget } from "../core/time-budget";
import type { Logger } from "../log";
import { getAttachments } from "../store/attachment-objects";
import { claimMessages, recordAttempts, recordedBy, releaseClaims, type AttemptRecord, type Claim } from "../store/attempts";
import { newSuppressionEvents } from "../store/suppressions";
import { dueEventsOf, newWebhookEvents, type DueWebhookEvent } from "../store/webhook-events";
import { requeue, type OutboxJob } from "./outbox";
import { enqueueWebhookEvents, type WebhookJob } from "./webhooks";
import { dkimSignerFor } from "./dkim-signer";
import { dataPayload, SmtpSession, type SmtpFailure, type SmtpMail, type SmtpTransaction } from "./smtp";

export interface DeliveryContext {
  db: D1Database;
  outbox: Queue<OutboxJob>;
  /** Where the webhook events the outcomes make are queued. */
  webhooks: Queue<WebhookJob>;
  attachments: R2Bucket;
  config: Config;
  log: Logger;
}

type Claimed = Extract<Claim, { kind: "claimed" }>;

/** How many deliveries of a job wait (1 s apart) for a message row that is not there. */
const UNKNOWN_ROW_PATIENCE = 3;
/** The most messages a lane claims at once (one D1 round trip); their outcomes are recorded together. */
const CHUNK_MAX = 10;
/**
 * And the most bytes of rows: a chunk is claimed until its messages' sizes reach this (the first always
 * is; one more may pass it by its own size, at most 1.9 MB). With a chunk in hand and one claimed ahead per
 * lane, the rows an invocation holds stay under about 5 lanes × 2 × 3.9 MB, whatever the messages weigh.
 */
export const CHUNK_BYTES = 2_000_000;

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
    recordings: [],
    started: 0,
    handedBack: 0,
    // Once the first session is up, more join (up to SMTP_SESSIONS), each claiming the next chunk as it
    // is free. Before that, one lane finds out whether the relay can be reached at all: if not, every
    // message gets that transient failure (and its own backoff) instead of a connect timeout each.
    sessionUp: false,
    firstSessionOpened: () => {
      run.firstSessionOpened = () => {};
      run.sessionUp = true;
      const extra = Math.min(config.smtpSessions, batch.messages.length) - 1;
      for (let i = 0; i < extra && run.waiting.length > 0; i++) run.lanes.push(joinLane(run));
    },
  };
  run.lanes.push(runLane(run, undefined));
  while (run.lanes.length > 0) await Promise.all(run.lanes.splice(0));
  await Promise.all(run.recordings);
  if (run.handedBack > 0) log.warn("time budget used up; the rest of the batch goes back to the queue", { handed_back: run.handedBack, started: run.started });
}

interface BatchRun {
  context: DeliveryContext;
  budget: TimeBudget;
  /** Messages no lane has taken yet. */
  waiting: Message<OutboxJob>[];
  lanes: Promise<void>[];
  /** Chunks' outcomes being written. */
  recordings: Promise<void>[];
  unreachable?: SmtpTransaction;
  /** Attempts that have an outcome (through the relay or not). */
  started: number;
  handedBack: number;
  /** Whether any session of this run has opened. */
  sessionUp: boolean;
  firstSessionOpened: () => void;
}

/** One claimed message of a chunk: what it goes to the relay as, and what came of it. */
interface Attempt {
  msg: Message<OutboxJob>;
  log: Logger;
  claim: Claimed;
  windowEndsAt: Date;
  /** The recipients still waiting: one the relay accepted before never gets the mail again. */
  attempted: string[];
  chunk: Chunk;
  /** What goes to the relay; built at the claim, or (attachments in R2) when the lane comes to it. */
  mail?: SmtpMail;
  outcome?: DeliveryOutcome;
}

/** Messages claimed together, whose outcomes are recorded together. */
interface Chunk {
  attempts: Attempt[];
  /** Until when a delivered mail's outcome may still be written: just before the claims end. */
  recordBy: number;
  /** When its attempts must be over. */
  deadline: number;
  recording?: boolean;
}

/** A further lane: it opens its session first, and leaves its share to the others if it cannot. */
async function joinLane(run: BatchRun): Promise<void> {
  const opened = await SmtpSession.open(run.context.config.smtp, { deadline: run.budget.attemptDeadline(Date.now()) });
  // A relay that takes fewer connections than asked for: the lanes already running carry on.
  if (opened.ok) await runLane(run, opened.value);
  else run.context.log.info("an extra SMTP session could not be opened; the others carry on", { reason: opened.failure.message });
}

/**
 * One SMTP session working through chunks of the batch. The next message is known before this one's
 * content goes out, so its envelope (or QUIT, after the last) can follow the final dot in the same write.
 */
async function runLane(run: BatchRun, opened: SmtpSession | undefined): Promise<void> {
  let session = opened;
  const feed = laneFeed(run);
  try {
    for (let current = await nextBuilt(run, feed); current; ) {
      if (run.started > 0 && Date.now() >= run.budget.startsNoneAfter) {
        await handBack(run, [current, ...(await feed.rest())]);
        handBackUnclaimed(run); // and what no lane has taken yet
        break;
      }
      const mail = current.mail!;
      if (!run.unreachable && (!session || session.isBroken)) {
        const reopened = await SmtpSession.open(run.context.config.smtp, { deadline: mail.deadline });
        if (reopened.ok) {
          session = reopened.value;
          run.firstSessionOpened();
        } else run.unreachable = { recipients: [], end: reopened }; // the rest need not wait for it too
      }
      // Only now, with a session up, does the lane claim more than the message in hand.
      const following = await nextBuilt(run, feed);
      if (session && !session.isBroken) {
        // A message the time budget will hand back gets no envelope sent ahead for it: QUIT instead.
        const next = following && Date.now() < run.budget.startsNoneAfter ? following.mail : "quit";
        finish(run, current, await session.send(mail, { next }));
      } else finish(run, current, run.unreachable!);
      current.mail = undefined; // its chunk waits for the others; the content need not
      current = following;
    }
  } finally {
    await session?.close();
  }
}

/**
 * The lane's messages for the relay: from its chunk, or from the next chunk it claims; none once the batch
 * is done. Once a session is up, the next chunk is claimed while the last message in hand is being sent.
 */
function laneFeed(run: BatchRun): { next(): Promise<Attempt | undefined>; rest(): Promise<Attempt[]> } {
  let ready: Attempt[] = [];
  let claiming: Promise<Attempt[]> | undefined;
  const claimNext = () => {
    const jobs = takeChunk(run);
    return jobs && claimChunk(run, jobs);
  };
  return {
    async next() {
      while (ready.length === 0) {
        const pending = claiming ?? claimNext();
        claiming = undefined;
        if (!pending) return undefined;
        ready = await pending;
      }
      const attempt = ready.shift();
      if (ready.length === 0 && run.sessionUp) claiming = claimNext();
      return attempt;
    },
    async rest() {
      const more = (await claiming) ?? [];
      claiming = undefined;
      return [...ready.splice(0), ...more];
    },
  };
}

/**
 * The lane's next message with its wire form built, only now that its turn comes: a lane holds two built
 * messages at most (the one in hand and the one after it), not its whole chunk, so the consumer's memory
 * grows with its sessions, not with its chunks (50 claimed 256 KiB CJK messages are 250 MB once encoded).
 * Those whose content cannot be built are settled on the way.
 */
async function nextBuilt(run: BatchRun, feed: ReturnType<typeof laneFeed>): Promise<Attempt | undefined> {
  for (let attempt = await feed.next(); attempt; attempt = await feed.next()) {
    const transaction = attempt.claim.message.attachmentsKey ? await buildWithStoredAttachments(run.context.attachments, attempt) : buildContent(attempt.claim.message);
    const mail = typeof transaction === "string" ? await mailFor(attempt, transaction, run.context.config) : transaction;
    if ("envelope" in mail) {
      attempt.mail = mail;
      return attempt;
    }
    finish(run, attempt, mail);
  }
  return undefined;
}

/** The message with its attachments read from R2, or why it cannot be sent: gone for good, or not readable now. */
async function buildWithStoredAttachments(bucket: R2Bucket, { claim: { message } }: Attempt): Promise<string | SmtpTransaction> {
  const stage = { stage: "message", command: "(reading the attachments)" } as const;
  try {
    const attachments = await getAttachments(bucket, message.attachmentsKey!);
    if (attachments) return buildContent({ ...message, attachments });
    return ended({ kind: "content", ...stage, message: "the message's attachments are no longer stored (the R2 object is gone)" });
  } catch (error) {
    return ended({ kind: "storage", ...stage, message: `the attachments could not be read from R2: ${String(error)}`.slice(0, 1000) });
  }
}

/**
 * What goes to the relay: the message, DKIM-signed when configured; with a bounce address, the envelope
 * sender is the message's own return path and DSNs are asked for (a relay that does not offer DSN gets no
 * parameter); otherwise the From address.
 */
async function mailFor({ claim, attempted, chunk }: Attempt, message: string, config: Config): Promise<SmtpMail | SmtpTransaction> {
  const { id, from } = claim.message;
  const { bounce } = config;
  let data = message;
  const signer = dkimSignerFor(config);
  if (signer) {
    try {
      data = await signMessage(message, await signer);
    } catch (error) {
      return ended({ kind: "signing", stage: "message", command: "(signing the message)", message: `the message could not be DKIM-signed: ${String(error)}`.slice(0, 1000) });
    }
  }
  const envelope: Envelope = bounce
    ? {
        from: await returnPathFor(id, { bounceAddress: bounce.address, secret: bounce.secret }),
        recipients: attempted,
        dsn: { envelopeId: await envelopeIdFor(id, bounce.secret), notify: bounce.notifySuccess ? ["SUCCESS", "FAILURE", "DELAY"] : ["FAILURE", "DELAY"] },
      }
    : { from: from.address, recipients: attempted };
  return { envelope, data: dataPayload(data), deadline: chunk.deadline };
}

/** The next few waiting jobs, so that every session gets a share; none once the time budget is used up. */
function takeChunk(run: BatchRun): Message<OutboxJob>[] | undefined {
  if (run.waiting.length === 0) return undefined;
  if (run.started > 0 && Date.now() >= run.budget.startsNoneAfter) {
    handBackUnclaimed(run);
    return undefined;
  }
  // Until a session is up, one message: a relay that cannot be reached holds no more claims than that.
  const share = run.sessionUp ? Math.ceil(run.waiting.length / run.context.config.smtpSessions) : 1;
  return run.waiting.splice(0, Math.min(CHUNK_MAX, share));
}

/** The jobs no lane has taken: never claimed, nothing counted, so the next invocation takes them at once. */
function handBackUnclaimed(run: BatchRun): void {
  const rest = run.waiting.splice(0);
  for (const msg of rest) msg.retry();
  run.handedBack += rest.length;
}

/** Claimed messages whose transactions the time budget leaves no room for: released, and their jobs back on the queue at once. */
async function handBack(run: BatchRun, attempts: Attempt[]): Promise<void> {
  try {
    await releaseClaims(run.context.db, attempts.map((a) => a.claim));
  } catch (error) {
    // Their claims stay until they expire; the jobs come back as not due until then.
    run.context.log.error("claims of messages handed back could not be released", { error, handed_back: attempts.length });
  }
  for (const attempt of attempts) {
    attempt.msg.retry();
    const { chunk } = attempt;
    chunk.attempts.splice(chunk.attempts.indexOf(attempt), 1);
    recordWhenDone(run, chunk);
  }
  run.handedBack += attempts.length;
}

/**
 * Claims a chunk's messages in one round trip and returns those that go to the relay. Jobs not claimed
 * are settled at once, and so are claimed messages with nothing to send (no recipient left, not
 * buildable, or interrupted past their retry window).
 */
async function claimChunk(run: BatchRun, jobs: Message<OutboxJob>[]): Promise<Attempt[]> {
  const { db, config, log } = run.context;
  const logFor = (msg: Message<OutboxJob>) => log.child({ email_id: msg.body?.id, request_id: msg.body?.request_id });
  const claimedAt = Date.now();
  const ids = jobs.map((msg) => msg.body?.id).filter((id): id is string => typeof id === "string");
  let claims: Map<string, Claim>;
  try {
    claims = ids.length > 0 ? await claimMessages(db, ids, { now: new Date(claimedAt), leaseMs: config.leaseSeconds * 1000, budgetBytes: CHUNK_BYTES }) : new Map();
  } catch (error) {
    for (const msg of jobs) backOff(msg, config, logFor(msg), error);
    return [];
  }
  const chunk: Chunk = { attempts: [], recordBy: run.budget.recordBy(claimedAt), deadline: run.budget.attemptDeadline(claimedAt) };
  const unclaimed: Promise<void>[] = [];
  const overBudget: Message<OutboxJob>[] = [];
  for (const msg of jobs) {
    const id = msg.body?.id;
    let claim: Claim = typeof id === "string" ? claims.get(id)! : { kind: "unknown" };
    if (claim.kind === "over_budget") {
      overBudget.push(msg); // untouched: the next chunk (of this lane or another) takes it
      continue;
    }
    if (claim.kind === "claimed" && chunk.attempts.some((a) => a.claim.message.id === id)) {
      // The same message twice in one chunk: the first job holds the claim; this one comes back after it.
      claim = { kind: "not_due", status: "sending", dueAt: new Date(claimedAt + config.leaseSeconds * 1000).toISOString() };
    }
    if (claim.kind !== "claimed") {
      const msgLog = logFor(msg);
      unclaimed.push(settleUnclaimed(msg, claim, run.context, msgLog).catch((error) => backOff(msg, config, msgLog, error)));
      continue;
    }
    // A waiting recipient on the key's suppression list is not sent to: settled as suppressed by this attempt.
    const suppressed = new Set(claim.suppressed.map((s) => s.address));
    const attempted = claim.recipients.filter((r) => (r.status === "pending" || r.status === "deferred") && !suppressed.has(r.address)).map((r) => r.address);
    chunk.attempts.push({ msg, log: logFor(msg), claim, windowEndsAt: retryWindowEndsAt(claim.message, config.retry), attempted, chunk });
  }
  run.waiting.unshift(...overBudget);
  await Promise.all(unclaimed);
  const forRelay: Attempt[] = [];
  const settled: [Attempt, SmtpTransaction][] = [];
  for (const attempt of chunk.attempts) {
    const { claim } = attempt;
    if (claim.interrupted && Date.now() >= attempt.windowEndsAt.getTime()) {
      // An attempt that died after the window ended gets no successor, so a message whose attempts
      // always die (too large, too slow) cannot loop forever.
      settled.push([attempt, ended({ kind: "connection", stage: "connect", command: "(previous attempt)", message: `attempt ${claim.attempt - 1} did not finish` })]);
      continue;
    }
    if (claim.interrupted) attempt.log.warn("the previous attempt was interrupted; this one may deliver a duplicate", { attempt: claim.attempt, outcome: "possible_duplicate" });
    // Its wire form is built when the lane comes to it (nextBuilt).
    if (attempt.attempted.length === 0) settled.push([attempt, NOBODY_LEFT]);
    else forRelay.push(attempt);
  }
  for (const [attempt, transaction] of settled) finish(run, attempt, transaction);
  return forRelay;
}

/** The message as it goes on the wire, or the reason it cannot. */
function buildContent(message: OutgoingMessage): string | SmtpTransaction {
  try {
    return buildMime(message);
  } catch (error) {
    return ended({ kind: "content", stage: "message", command: "(building the message)", message: `the message could not be built: ${String(error)}`.slice(0, 1000) });
  }
}

/** Classifies an attempt's transaction; once its whole chunk is done, the chunk's outcomes are recorded. */
function finish(run: BatchRun, attempt: Attempt, transaction: SmtpTransaction): void {
  const { claim, chunk } = attempt;
  attempt.outcome = classifyAttempt(transaction, {
    attempt: claim.attempt,
    now: new Date(),
    windowEndsAt: attempt.windowEndsAt,
    policy: run.context.config.retry,
    attempted: attempt.attempted,
    sentBefore: claim.recipients.some((r) => r.status === "sent" || r.status === "delivered" || r.status === "complained"),
    suppressed: claim.suppressed,
  });
  run.started += 1;
  recordWhenDone(run, chunk);
}

/** Once every attempt of a chunk has its outcome, they are written together. */
function recordWhenDone(run: BatchRun, chunk: Chunk): void {
  if (chunk.recording || chunk.attempts.length === 0 || !chunk.attempts.every((a) => a.outcome)) return;
  chunk.recording = true;
  run.recordings.push(recordChunk(run.context, chunk));
}

/** D1, the queue or the runtime failed us, not the message: keep the job and back off. */
function backOff(msg: Message<OutboxJob>, config: Config, log: Logger, error: unknown): void {
  const delaySeconds = backoffSeconds(msg.attempts, config.retry);
  log.error("delivery attempt crashed; will retry", { error, outcome: "error", retry_in_s: delaySeconds });
  msg.retry({ delaySeconds });
}

/** A job whose message this invocation did not claim: nothing to send now, or not yet. */
async function settleUnclaimed(msg: Message<OutboxJob>, claim: Exclude<Claim, Claimed | { kind: "over_budget" }>, { outbox }: DeliveryContext, log: Logger): Promise<void> {
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
async function recordChunk({ db, webhooks, config, log }: DeliveryContext, chunk: Chunk): Promise<void> {
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
  chunk.attempts.forEach(({ msg, log, claim, outcome }, i) => {
    const mine = applied[i]!;
    if (outcome!.kind === "retry" && mine) msg.retry({ delaySeconds: outcome!.delaySeconds });
    else msg.ack(); // done, or the claim had expired and another attempt owns the message now
    log.info("delivery attempt", {
      attempt: claim.attempt,
      outcome: mine ? outcome!.kind : "claim_lost",
      smtp_code: outcome!.code,
      reason: outcome!.kind === "sent" ? undefined : outcome!.reason,
      retry_in_s: outcome!.kind === "retry" ? outcome!.delaySeconds : undefined,
      // What API clients read says "the relay"; the operator's log says which.
      relay: outcome!.kind === "sent" ? undefined : `${config.smtp.host}:${config.smtp.port}`,
    });
  });
}

function attemptRecord({ claim, outcome }: Attempt, at: Date): AttemptRecord {
  const o = outcome!;
  const base = { id: claim.message.id, attempt: claim.attempt, at: at.toISOString(), smtpCode: o.code, recipients: o.recipients };
  switch (o.kind) {
    case "sent":
      return { ...base, kind: "sent", detail: o.detail };
    case "retry":
      return { ...base, kind: "retry", reason: o.reason, nextAttemptAt: new Date(at.getTime() + o.delaySeconds * 1000).toISOString() };
    case "failed":
      return { ...base, kind: "failed", reason: o.reason };
  }
}
