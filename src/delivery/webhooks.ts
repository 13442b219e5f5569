// Webhook delivery: the mailroom-webhooks queue's consumer, and putting new events on that queue. A job
// carries only an event's id; the row holds the truth, and a claim decides which delivery of a job may
// POST. Each attempt POSTs the event's payload, signed (Standard Webhooks), with a 15 s timeout and no
// redirects followed, and records the answer; a retry is a new job delayed until it is due. A job lost
// on the way (a queue refusal, a restart) is found by the sweep (sweepWebhookEvents).
import type { Config } from "../config";
import { judgeWebhookAttempt, type WebhookAnswer } from "../core/webhook-retry";
import { signatureHeaders } from "../core/webhook-signature";
import type { Logger } from "../log";
import { claimWebhookEvent, eventPayload, failWebhookEvent, recordWebhookAttempt, takeOverdueWebhookEvents, type DueWebhookEvent } from "../store/webhook-events";
import { signingSecrets } from "../store/webhooks";
import { delayUntil } from "./outbox";

export interface WebhookJob {
  id: string;
}

export interface WebhookContext {
  db: D1Database;
  webhooks: Queue<WebhookJob>;
  config: Config;
  log: Logger;
}

/** How long one POST may take. */
export const WEBHOOK_TIMEOUT_MS = 15_000;
/** An attempt's claim: the POST's timeout and room to record its answer. */
const WEBHOOK_LEASE_MS = WEBHOOK_TIMEOUT_MS + 15_000;
/** A job whose attempt crashed comes back once that attempt's claim has expired. */
const CRASH_RETRY_SECONDS = WEBHOOK_LEASE_MS / 1000 + 15;
/** The answer kept per attempt. */
const RESPONSE_BYTES = 1024;
/** A webhook all of whose deliveries have failed for this long is disabled. */
export const DISABLE_AFTER_FAILING_MS = 5 * 86_400_000;

/** Puts jobs for new events on the webhooks queue; one that cannot be queued is found by the sweep. */
export async function enqueueWebhookEvents(queue: Queue<WebhookJob>, events: DueWebhookEvent[], log: Logger): Promise<void> {
  if (events.length === 0) return;
  try {
    for (let i = 0; i < events.length; i += 100) {
      await queue.sendBatch(events.slice(i, i + 100).map((e) => ({ body: { id: e.id }, contentType: "json" as const, delaySeconds: delayUntil(e.dueAt) })));
    }
  } catch (error) {
    log.error("webhook events could not be queued; the sweep delivers them", { error, webhook_events: events.length });
  }
}

export async function deliverWebhookBatch(batch: MessageBatch<WebhookJob>, context: WebhookContext): Promise<void> {
  await Promise.all(batch.messages.map((msg) => deliverOne(msg, context)));
}

async function deliverOne(msg: Message<WebhookJob>, { db, webhooks, config, log: batchLog }: WebhookContext): Promise<void> {
  const id = msg.body?.id;
  const log = batchLog.child({ webhook_event_id: id });
  try {
    const claim = typeof id === "string" ? await claimWebhookEvent(db, id, { now: new Date(), leaseMs: WEBHOOK_LEASE_MS }) : ({ kind: "unknown" } as const);
    if (claim.kind === "unknown" || claim.kind === "settled") {
      msg.ack(); // deleted with its webhook or message, or delivered already
      return;
    }
    if (claim.kind === "not_due") {
      // A duplicate job (the sweep's, a replay's) for an event under way or already rescheduled: the job of
      // the attempt that holds or held the claim is the one that comes back for it (and the sweep, if it is lost).
      log.info("webhook job dropped: its event is not due", { outcome: "skipped", due_at: claim.dueAt });
      msg.ack();
      return;
    }
    const { event, webhook, message, reported } = claim;
    const eventLog = log.child({ webhook_id: webhook.id, type: event.type, attempt: event.attempts - event.roundStart });
    if (webhook.status === "disabled") {
      await failWebhookEvent(db, { id: event.id, attempt: event.attempts });
      eventLog.info("webhook event not sent: the webhook is disabled", { outcome: "failed" });
      msg.ack();
      return;
    }
    const body = JSON.stringify(eventPayload({ event, message, reported }));
    const now = new Date();
    const headers = await signatureHeaders({ id: event.id, timestamp: Math.floor(now.getTime() / 1000), body, secrets: signingSecrets(webhook, now) });
    const answer = await post(webhook.endpoint, body, headers);
    const sentAt = new Date();
    const round = event.attempts - event.roundStart;
    const verdict = judgeWebhookAttempt(answer, round, config.webhookRetryDelaysSeconds, sentAt.getTime());
    const failingTooLong = verdict.kind !== "success" && webhook.failingSince !== null && sentAt.getTime() - Date.parse(webhook.failingSince) >= DISABLE_AFTER_FAILING_MS;
    const nextAttemptAt = verdict.kind === "retry" ? new Date(sentAt.getTime() + verdict.delaySeconds * 1000).toISOString() : undefined;
    const recorded = await recordWebhookAttempt(db, {
      eventId: event.id,
      webhookId: webhook.id,
      attempt: event.attempts,
      attemptId: crypto.randomUUID(),
      statusCode: answer.status,
      response: "error" in answer ? answer.error : answer.body,
      sentAt: sentAt.toISOString(),
      verdict,
      nextAttemptAt,
      disable: verdict.kind === "gone" || failingTooLong,
    });
    eventLog.info("webhook attempt", { outcome: recorded ? verdict.kind : "claim_lost", http_status: answer.status, endpoint_host: new URL(webhook.endpoint).host, retry_at: nextAttemptAt });
    if (verdict.kind === "gone") eventLog.warn("webhook disabled: its endpoint answered 410 Gone", { webhook_id: webhook.id });
    else if (failingTooLong) eventLog.warn("webhook disabled: its deliveries have all failed for 5 days", { webhook_id: webhook.id, failing_since: webhook.failingSince });
    if (recorded && nextAttemptAt) {
      await webhooks.send({ id: event.id }, { delaySeconds: delayUntil(nextAttemptAt), contentType: "json" }).catch((error) =>
        eventLog.error("webhook retry could not be queued; the sweep delivers it", { error }),
      );
    }
    msg.ack();
  } catch (error) {
    // D1 or the queue failed us: the job comes back (and the claim, if taken, expires first).
    // After the claim has expired, so the retry can take it.
    log.error("webhook delivery crashed; will retry", { error });
    msg.retry({ delaySeconds: CRASH_RETRY_SECONDS });
  }
}

/** One POST: its status and the first KiB of its answer, or why there was none (status 0). */
async function post(endpoint: string, body: string, signature: Record<string, string>): Promise<WebhookAnswer & { body: string }> {
  try {
    const response = await fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json", "User-Agent": "Mailroom-Webhooks/1", ...signature },
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
    });
    return { status: response.status, retryAfter: response.headers.get("Retry-After"), body: await firstBytes(response, RESPONSE_BYTES) };
  } catch (error) {
    const timedOut = error instanceof DOMException && (error.name === "TimeoutError" || error.name === "AbortError");
    const why = timedOut ? `no answer within ${WEBHOOK_TIMEOUT_MS / 1000} s` : `the request failed: ${String(error)}`.slice(0, RESPONSE_BYTES);
    return { status: 0, error: why, body: why };
  }
}

/** The first `limit` bytes of a body as text, reading no more of it than that. */
async function firstBytes(response: Response, limit: number): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } catch {
    // An answer cut off mid-body: what came is what is kept.
  } finally {
    await reader.cancel().catch(() => {});
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) all.set(chunk, (at += chunk.byteLength) - chunk.byteLength);
  return new TextDecoder().decode(all.subarray(0, limit));
}

/** The sweep: at most 1,000 overdue events a minute go back on the webhooks queue. */
export async function sweepWebhookEvents({ db, webhooks, config, log }: WebhookContext, now = new Date()): Promise<number> {
  const cutoff = new Date(now.getTime() - config.sweepGraceSeconds * 1000).toISOString();
  let requeued = 0;
  for (let round = 0; round < 10; round++) {
    const ids = await takeOverdueWebhookEvents(db, { cutoff, now: now.toISOString(), limit: 100 });
    if (ids.length === 0) break;
    await webhooks.sendBatch(ids.map((id) => ({ body: { id }, contentType: "json" as const })));
    requeued += ids.length;
    if (ids.length < 100) break;
  }
  if (requeued > 0) log.warn("sweep put overdue webhook events back on the queue", { outcome: "requeued", requeued });
  return requeued;
}
