// The outbox queue consumer: claims the messages of a batch, delivers them over a few transport sessions
// at once (SMTP to the relay; Cloudflare Email Service when the relay cannot be used at all and TRANSPORT
// lists it next), and records the outcomes (chunk.ts). Only the attempt holding a message's claim may send it, so a repeated
// or concurrent job never sends twice; a job for a message not due yet goes back on the queue until it
// is; once the relay has accepted a mail, its outcome is recorded for as long as the claim lasts and the
// job is never re-queued. Each session (a lane) claims a few messages at a time in one D1 round trip,
// pipelines them (the next mail's envelope goes out behind the previous mail's final dot, QUIT behind the
// last one) and records each chunk's outcomes in one D1 transaction while it sends the next; a chunk is at
// most 10 messages and about 2 MB of rows, so what an invocation holds is bounded by bytes, not by count. Late in its
// time budget the invocation claims nothing more and hands the rest back to the queue. A message whose
// attachments are in R2 is read and built only when its lane comes to it, so a lane holds two at most.
import { classifyAttempt } from "../core/outcome";
import { backoffSeconds, retryWindowEndsAt } from "../core/retry";
import { createTimeBudget, type TimeBudget } from "../core/time-budget";
import { claimMessages, releaseClaims, type Claim } from "../store/attempts";
import { ended, type SmtpResult, type SmtpTransaction, type Transport, type TransportSession } from "../transport/transport";
import { backOff, recordChunk, settleUnclaimed, type Attempt, type Chunk, type DeliveryContext } from "./chunk";
import type { OutboxJob } from "./outbox";
import { outgoingMail } from "./outgoing";
import { openSessions, reopenSession, transportsFor } from "./transports";

export type { DeliveryContext } from "./chunk";

/** The most messages a lane claims at once (one D1 round trip); their outcomes are recorded together. */
const CHUNK_MAX = 10;
/**
 * And the most bytes of rows: a chunk is claimed until its messages' sizes reach this (the first always
 * is; one more may pass it by its own size, at most 1.9 MB). With a chunk in hand and one claimed ahead per
 * lane, the rows an invocation holds stay under about 5 lanes × 2 × 3.9 MB, whatever the messages weigh.
 */
export const CHUNK_BYTES = 2_000_000;

/** A claimed message whose recipients are all settled already: nothing goes to the relay. */
const NOBODY_LEFT = ended({ kind: "protocol", stage: "rcpt", command: "RCPT TO", message: "no recipient is left to send to" });

export async function deliverBatch(batch: MessageBatch<OutboxJob>, context: DeliveryContext): Promise<void> {
  const { config, log } = context;
  const run: BatchRun = {
    context,
    budget: createTimeBudget(Date.now(), config.leaseSeconds),
    transports: transportsFor(context),
    failedOver: 0,
    waiting: [...batch.messages],
    lanes: [],
    recordings: [],
    started: 0,
    handedBack: 0,
    sessions: Math.min(config.smtpSessions, batch.messages.length),
    opening: false,
  };
  // The first lane claims one message; once it has one for the relay, every session (up to SMTP_SESSIONS)
  // opens at once, and each lane claims the next chunk as it is free. When no session can be opened, the
  // relay (and whatever TRANSPORT lists after it) cannot be used at all: every message then gets that
  // transient failure (and its own backoff) instead of a connect timeout each.
  run.lanes.push(runLane(run, undefined));
  while (run.lanes.length > 0) await Promise.all(run.lanes.splice(0));
  await Promise.all(run.recordings);
  if (run.handedBack > 0) log.warn("time budget used up; the rest of the batch goes back to the queue", { handed_back: run.handedBack, started: run.started });
}

export interface BatchRun {
  context: DeliveryContext;
  budget: TimeBudget;
  /** TRANSPORT, in order. */
  transports: Transport[];
  /** The first of them to try: once one could not be used at all, this batch does not try it again. */
  failedOver: number;
  /** Messages no lane has taken yet. */
  waiting: Message<OutboxJob>[];
  lanes: Promise<void>[];
  /** Chunks' outcomes being written. */
  recordings: Promise<void>[];
  unreachable?: SmtpTransaction;
  /** Attempts that have an outcome (through the relay or not). */
  started: number;
  handedBack: number;
  /** How many sessions the batch opens (SMTP_SESSIONS, or fewer for a small batch). */
  sessions: number;
  /** Whether the batch's sessions have been asked for. */
  opening: boolean;
}

/**
 * The first lane's session, once it has a mail for the relay: every session of the batch opens at once
 * (no handshake waits for another's), the first one up is the first lane's, and each of the others
 * starts a lane of its own. A failure only once none of them could be opened (transports.ts decides
 * whether to fail over).
 */
function openBatchSessions(run: BatchRun, deadline: number): Promise<SmtpResult<TransportSession>> {
  run.opening = true;
  return new Promise((resolve) => {
    let firstLane = true;
    const opening = openSessions(run, { count: run.sessions, deadline, waitUntil: run.budget.startsNoneAfter }, (session) => {
      if (!firstLane) run.lanes.push(runLane(run, session));
      firstLane = false;
      resolve({ ok: true, value: session });
    });
    run.lanes.push(opening.then((failure) => failure && resolve({ ok: false, failure })));
  });
}

/**
 * One transport session working through chunks of the batch. The next message is known before this one's
 * content goes out, so (over SMTP) its envelope, or QUIT after the last, can follow the final dot in the same write.
 */
async function runLane(run: BatchRun, opened: TransportSession | undefined): Promise<void> {
  let session = opened;
  const feed = laneFeed(run);
  /**
   * A usable session for the mails in hand, or run.unreachable set; false when pacing left no place in
   * time and they (and the rest) went back to the queue as they were (no attempt counted).
   */
  const ensureSession = async (inHand: Attempt[]): Promise<boolean> => {
    if (run.unreachable || (session && !session.isBroken)) return true;
    await session?.close();
    session = undefined;
    // A lane may wait for a place under SMTP_MAX_CONNECTIONS until the budget lets it start nothing more.
    const deadline = inHand[0]!.mail!.deadline;
    const reopened = run.opening ? await reopenSession(run, { deadline, waitUntil: run.budget.startsNoneAfter }) : await openBatchSessions(run, deadline);
    if (reopened.ok) {
      session = reopened.value;
      return true;
    }
    if (reopened.failure.stage !== "pacing") {
      run.unreachable = { recipients: [], end: reopened }; // the rest need not wait for it too
      return true;
    }
    run.context.log.warn("no connection to the relay could be had in time; the batch goes back to the queue", { reason: reopened.failure.message });
    await handBack(run, [...inHand, ...(await feed.rest())], { backOff: true });
    handBackUnclaimed(run, { backOff: true });
    return false;
  };
  try {
    for (let current = await nextBuilt(run, feed); current; ) {
      if (run.started > 0 && Date.now() >= run.budget.startsNoneAfter) {
        await handBack(run, [current, ...(await feed.rest())]);
        handBackUnclaimed(run); // and what no lane has taken yet
        break;
      }
      const mail = current.mail!;
      if (!(await ensureSession([current]))) break;
      // Only now, with a session up, does the lane claim more than the message in hand.
      const following = await nextBuilt(run, feed);
      // The session may have ended while the next one was claimed and built (its pacing lease was lost).
      if (!(await ensureSession(following ? [current, following] : [current]))) break;
      if (session && !session.isBroken) {
        // A message the time budget will hand back gets no envelope sent ahead for it: QUIT instead.
        const next = following && Date.now() < run.budget.startsNoneAfter ? following.mail! : "quit";
        current.transport = session.transport;
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
 * is done. Once the sessions are opening, the next chunk is claimed while the last message in hand is being sent.
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
      if (ready.length === 0 && run.opening) claiming = claimNext();
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
  const { config, attachments } = run.context;
  for (let attempt = await feed.next(); attempt; attempt = await feed.next()) {
    const mail = await outgoingMail(attempt.claim.message, { config, attachments, recipients: attempt.attempted, deadline: attempt.chunk.deadline });
    if ("envelope" in mail) {
      attempt.mail = mail;
      return attempt;
    }
    finish(run, attempt, mail);
  }
  return undefined;
}

/** The next few waiting jobs, so that every session gets a share; none once the time budget is used up. */
function takeChunk(run: BatchRun): Message<OutboxJob>[] | undefined {
  if (run.waiting.length === 0) return undefined;
  if (run.started > 0 && Date.now() >= run.budget.startsNoneAfter) {
    handBackUnclaimed(run);
    return undefined;
  }
  // Before the sessions are opened, one message: a batch that has nothing for the relay opens none, and a
  // relay that hangs or cannot be reached holds no more claims than that (a crash then interrupts one).
  const share = run.opening ? Math.ceil(run.waiting.length / run.context.config.smtpSessions) : 1;
  return run.waiting.splice(0, Math.min(CHUNK_MAX, share));
}

/** How handed-back jobs come back: at once, or (when pacing held them back) after the job's own backoff. */
interface HandBackOptions {
  backOff?: boolean;
}

function retryJob(run: BatchRun, msg: Message<OutboxJob>, { backOff = false }: HandBackOptions): void {
  if (backOff) msg.retry({ delaySeconds: backoffSeconds(msg.attempts, run.context.config.retry) });
  else msg.retry();
}

/** The jobs no lane has taken: never claimed, nothing counted, so the next invocation takes them at once. */
function handBackUnclaimed(run: BatchRun, options: HandBackOptions = {}): void {
  const rest = run.waiting.splice(0);
  for (const msg of rest) retryJob(run, msg, options);
  run.handedBack += rest.length;
}

/** Claimed messages whose transactions the time budget leaves no room for: released, and their jobs back on the queue. */
async function handBack(run: BatchRun, attempts: Attempt[], options: HandBackOptions = {}): Promise<void> {
  try {
    await releaseClaims(run.context.db, attempts.map((a) => a.claim));
  } catch (error) {
    // Their claims stay until they expire; the jobs come back as not due until then.
    run.context.log.error("claims of messages handed back could not be released", { error, handed_back: attempts.length });
  }
  for (const attempt of attempts) {
    retryJob(run, attempt.msg, options);
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
