// Webhook behaviour the main integration tests leave open (found by a mutation-testing pass), in the same
// setting: real local D1 and queues, the real consumer, the global setup's webhook receiver on loopback.
// Paging by id among events that share a created_at; the failure clock (kept across failures, cleared by
// a success, restarted by enabling); claims and answers of attempts whose claim expired; replays of a
// failed event and during an attempt; the sweep's grace; redirects; the kept answer's size; which history
// makes which event (none for an immediate send's acceptance, none for a failure of a partly sent message)
// and the dead-letter path's events.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../src/config";
import { sweepWebhookEvents, type WebhookJob } from "../../src/delivery/webhooks";
import mailroom from "../../src/index";
import { createLogger } from "../../src/log";
import { claimWebhookEvent, failWebhookEvent, recordWebhookAttempt } from "../../src/store/webhook-events";
import type { WebhookDelivery } from "../../scripts/webhook-receiver.mjs";
import { api, HOOKS_KEY, OTHER_KEY, uniqueRecipient } from "../helpers/api";
import { claimMessage, deliver, insertQueuedMessage, recordFailure, recordRetry, runQueue } from "../helpers/factories";
import { createWebhook, newEndpoint, receivedBy, scriptAnswers } from "../helpers/webhooks";

type Payload = { type: string; created_at: string; data: Record<string, any> };
type EmailView = { status: string; last_event: string };
type EventList = { object: string; has_more: boolean; data: { id: string; type: string; created_at: string; status: string }[] };
type AttemptList = { has_more: boolean; data: { id: string; http_status_code: number; response: string; sent_at: string }[] };

const created: { id: string; key: string }[] = [];
afterEach(async () => {
  // Deleted, so no later test's mail makes events for them.
  for (const { id, key } of created.splice(0)) await api(`/v1/webhooks/${id}`, { method: "DELETE", key });
});

async function subscribe(events: string[], key = HOOKS_KEY) {
  const endpoint = newEndpoint("mutant");
  const webhook = await createWebhook(endpoint.url, events, key);
  created.push({ id: webhook.id, key });
  return { ...endpoint, ...webhook };
}

async function send(json: Record<string, unknown>): Promise<string> {
  const res = await api("/v1/emails", { method: "POST", json: { subject: "Mutant test", text: "x", ...json }, key: HOOKS_KEY });
  expect(res.status).toBe(202);
  return (await res.json<{ id: string }>()).id;
}

const poll = { timeout: 10_000, interval: 20 };

function verified(delivery: WebhookDelivery, secret: string): Payload {
  const headers = Object.fromEntries(Object.entries(delivery.headers).map(([k, v]) => [k, String(v)]));
  return new Webhook(secret).verify(delivery.body, headers) as Payload;
}

type EventRow = { id: string; type: string; status: string; attempts: number; round_start: number; next_attempt_at: string | null; message_id: string };
async function eventRows(webhookId: string) {
  const { results } = await env.DB.prepare("SELECT id, type, status, attempts, round_start, next_attempt_at, message_id FROM webhook_events WHERE webhook_id = ? ORDER BY created_at, id").bind(webhookId).all<EventRow>();
  return results;
}

/** Until each of the webhook's `count` events is delivered, so that no attempt is still being recorded when the test ends. */
const delivered = (webhookId: string, count: number) =>
  vi.waitFor(async () => expect((await eventRows(webhookId)).map((r) => r.status)).toEqual(Array(count).fill("success")), poll);

const webhookRow = (id: string) => env.DB.prepare("SELECT status, failing_since, previous_secret, previous_secret_until FROM webhooks WHERE id = ?").bind(id).first<{ status: string; failing_since: string | null; previous_secret: string | null; previous_secret_until: string | null }>();

const noQueue = { send: async () => {}, sendBatch: async () => {} };

/** A webhook with one email.sent event whose job was lost: the event is pending, due now, never attempted. */
async function hookWithPendingEvent() {
  const hook = await subscribe(["email.sent"]);
  const { id } = await insertQueuedMessage({ to: uniqueRecipient(), apiKeyName: "hooks" });
  await deliver([id], { WEBHOOKS: noQueue });
  const [event] = await eventRows(hook.id);
  expect(event).toMatchObject({ type: "email.sent", status: "pending", attempts: 0 });
  return { hook, event: event!, messageId: id };
}

/** Runs the webhooks queue's consumer on one job per id. */
async function runWebhookJobs(ids: string[]) {
  const batch = createMessageBatch<WebhookJob>("mailroom-webhooks", ids.map((id, n) => ({ id: `job-${n}`, timestamp: new Date(), attempts: 1, body: { id } })));
  const ctx = createExecutionContext();
  await (mailroom as ExportedHandler<Env, WebhookJob>).queue!(batch, env, ctx);
  return getQueueResult(batch, ctx);
}

/** A queue that keeps what it is sent instead of delivering it. */
function capturingQueue() {
  const ids: string[] = [];
  const queue = {
    send: async (body: WebhookJob) => void ids.push(body.id),
    sendBatch: async (messages: Iterable<MessageSendRequest<WebhookJob>>) => void ids.push(...[...messages].map((m) => m.body.id)),
  };
  return { ids, queue };
}

describe("paging a webhook's events", () => {
  it("orders events that share a created_at by id, both ways, with has_more exact at the limit", async () => {
    const hook = await subscribe(["email.sent", "email.bounced"]);
    // One attempt makes three events with one created_at: two bounces and the sent.
    await send({ to: [uniqueRecipient("good"), uniqueRecipient("reject"), uniqueRecipient("reject")] });
    await receivedBy(hook.name, 3);
    await delivered(hook.id, 3);
    const page = async (query: string) => (await api(`/v1/webhooks/${hook.id}/events${query}`, { key: HOOKS_KEY })).json<EventList>();
    const all = await page("?limit=3");
    expect(all.has_more).toBe(false);
    expect(new Set(all.data.map((e) => e.created_at)).size).toBe(1);
    const [a, b, c] = all.data.map((e) => e.id);
    expect([a, b, c]).toEqual([a!, b!, c!].sort().reverse()); // newest first: for one created_at, the greater id first
    const ids = async (query: string) => {
      const p = await page(query);
      return { has_more: p.has_more, ids: p.data.map((e) => e.id) };
    };
    expect(await ids("?limit=2")).toEqual({ has_more: true, ids: [a, b] });
    expect(await ids(`?limit=1&after=${a}`)).toEqual({ has_more: true, ids: [b] });
    expect(await ids(`?limit=2&after=${a}`)).toEqual({ has_more: false, ids: [b, c] });
    expect(await ids(`?limit=1&after=${c}`)).toEqual({ has_more: false, ids: [] });
    expect(await ids(`?limit=1&before=${c}`)).toEqual({ has_more: true, ids: [b] });
    expect(await ids(`?limit=2&before=${c}`)).toEqual({ has_more: false, ids: [a, b] });
  });
});

describe("a webhook's failure clock", () => {
  it("keeps the time of the first failure across later failures", async () => {
    const hook = await subscribe(["email.sent"]);
    const since = new Date(Date.now() - 86_400_000).toISOString();
    await env.DB.prepare("UPDATE webhooks SET failing_since = ? WHERE id = ?").bind(since, hook.id).run();
    await scriptAnswers(hook.name, Array(4).fill({ status: 500 }));
    await send({ to: uniqueRecipient() });
    await receivedBy(hook.name, 4);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "failed", attempts: 4 }), poll);
    expect(await webhookRow(hook.id)).toMatchObject({ status: "enabled", failing_since: since });
  });

  it("is cleared by a success, which never disables a webhook however long it failed before", async () => {
    const hook = await subscribe(["email.sent"]);
    await env.DB.prepare("UPDATE webhooks SET failing_since = ? WHERE id = ?").bind(new Date(Date.now() - 6 * 86_400_000).toISOString(), hook.id).run();
    await send({ to: uniqueRecipient() });
    await receivedBy(hook.name, 1);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success", attempts: 1 }), poll);
    expect(await webhookRow(hook.id)).toMatchObject({ status: "enabled", failing_since: null });
  });

  it("starts afresh when a disabled webhook is enabled, so its next failure does not disable it again", async () => {
    const hook = await subscribe(["email.sent"]);
    await env.DB.prepare("UPDATE webhooks SET status = 'disabled', failing_since = ? WHERE id = ?").bind(new Date(Date.now() - 6 * 86_400_000).toISOString(), hook.id).run();
    expect((await api(`/v1/webhooks/${hook.id}`, { method: "PATCH", json: { status: "enabled" }, key: HOOKS_KEY })).status).toBe(200);
    expect(await webhookRow(hook.id)).toMatchObject({ status: "enabled", failing_since: null });
    await scriptAnswers(hook.name, [{ status: 500 }]);
    await send({ to: uniqueRecipient() });
    expect((await receivedBy(hook.name, 2)).map((d) => d.answered)).toEqual([500, 200]);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success", attempts: 2 }), poll);
    expect(await webhookRow(hook.id)).toMatchObject({ status: "enabled", failing_since: null });
  });
});

describe("attempts and their claims", () => {
  it("takes over an attempt whose claim expired, and delivers the event", async () => {
    const { hook, event } = await hookWithPendingEvent();
    await env.DB.prepare("UPDATE webhook_events SET status = 'attempting', attempts = 1, next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() - 1000).toISOString(), event.id).run();
    const result = await runWebhookJobs([event.id]);
    expect(result.explicitAcks).toEqual(["job-0"]);
    const [delivery, ...more] = await receivedBy(hook.name, 1);
    expect(more).toEqual([]);
    expect(delivery!.headers["webhook-id"]).toBe(event.id);
    expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success", attempts: 2 });
  });

  it("records nothing for an attempt whose claim another attempt has taken since: no attempt row, no failure clock, no disabling", async () => {
    const { hook, event } = await hookWithPendingEvent();
    const late = await claimWebhookEvent(env.DB, event.id, { now: new Date(), leaseMs: -1000 }); // its claim has already expired
    expect(late).toMatchObject({ kind: "claimed", event: { attempts: 1 } });
    const current = await claimWebhookEvent(env.DB, event.id, { now: new Date(), leaseMs: 60_000 });
    expect(current).toMatchObject({ kind: "claimed", event: { attempts: 2 } });
    const recorded = await recordWebhookAttempt(env.DB, {
      eventId: event.id,
      webhookId: hook.id,
      attempt: 1,
      attemptId: crypto.randomUUID(),
      statusCode: 410,
      response: "gone",
      sentAt: new Date().toISOString(),
      verdict: { kind: "gone" },
      disable: true,
    });
    expect(recorded).toBe(false);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM webhook_attempts WHERE event_id = ?").bind(event.id).first("n")).toBe(0);
    expect(await webhookRow(hook.id)).toMatchObject({ status: "enabled", failing_since: null });
    expect((await eventRows(hook.id))[0]).toMatchObject({ status: "attempting", attempts: 2 });
  });

  it("does not fail an event for an attempt whose claim another attempt has taken since", async () => {
    const { hook, event } = await hookWithPendingEvent();
    await claimWebhookEvent(env.DB, event.id, { now: new Date(), leaseMs: -1000 }); // its claim has already expired
    expect(await claimWebhookEvent(env.DB, event.id, { now: new Date(), leaseMs: 60_000 })).toMatchObject({ kind: "claimed", event: { attempts: 2 } });
    await failWebhookEvent(env.DB, { id: event.id, attempt: 1 });
    expect((await eventRows(hook.id))[0]).toMatchObject({ status: "attempting", attempts: 2 });
  });

  it("fails, without POSTing or counting an attempt, an event whose webhook was disabled after it was made", async () => {
    const { hook, event } = await hookWithPendingEvent();
    expect((await api(`/v1/webhooks/${hook.id}`, { method: "PATCH", json: { status: "disabled" }, key: HOOKS_KEY })).status).toBe(200);
    expect((await runWebhookJobs([event.id])).explicitAcks).toEqual(["job-0"]);
    expect(await receivedBy(hook.name, 0)).toEqual([]);
    expect((await eventRows(hook.id))[0]).toMatchObject({ status: "failed", attempts: 0, next_attempt_at: null });
  });

  it("does not follow a redirect: it is a failed attempt, retried at the same endpoint", async () => {
    const hook = await subscribe(["email.sent"]);
    const elsewhere = newEndpoint("elsewhere");
    await scriptAnswers(hook.name, [{ status: 307, headers: { Location: elsewhere.url } }]);
    await send({ to: uniqueRecipient() });
    expect((await receivedBy(hook.name, 2)).map((d) => d.answered)).toEqual([307, 200]);
    const [event] = await eventRows(hook.id);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success", attempts: 2 }), poll);
    const attempts = await (await api(`/v1/webhooks/${hook.id}/events/${event!.id}/attempts`, { key: HOOKS_KEY })).json<AttemptList>();
    expect(attempts.data.map((a) => a.http_status_code)).toEqual([200, 307]);
    expect(await receivedBy(elsewhere.name, 0)).toEqual([]);
  });

  it("keeps the first KiB of an answer", async () => {
    const hook = await subscribe(["email.sent"]);
    await scriptAnswers(hook.name, [{ status: 500, body: "é".repeat(300) + "x".repeat(5000) }]);
    await send({ to: uniqueRecipient() });
    await receivedBy(hook.name, 2);
    const [event] = await eventRows(hook.id);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success", attempts: 2 }), poll);
    const attempts = await (await api(`/v1/webhooks/${hook.id}/events/${event!.id}/attempts`, { key: HOOKS_KEY })).json<AttemptList>();
    // 300 two-byte characters and 424 one-byte ones: 1,024 bytes.
    expect(attempts.data[1]).toMatchObject({ http_status_code: 500, response: "é".repeat(300) + "x".repeat(424) });
  });

  it("shows when an attempt's claim expires as next_attempt_at while the attempt is under way", async () => {
    const { hook, event } = await hookWithPendingEvent();
    const expires = new Date(Date.now() + 30_000).toISOString();
    await env.DB.prepare("UPDATE webhook_events SET status = 'attempting', attempts = 1, next_attempt_at = ? WHERE id = ?").bind(expires, event.id).run();
    const view = await (await api(`/v1/webhooks/${hook.id}/events/${event.id}`, { key: HOOKS_KEY })).json<Record<string, unknown>>();
    expect(view).toMatchObject({ id: event.id, status: "attempting", next_attempt_at: expires });
  });
});

describe("replays", () => {
  it("give a failed event a fresh schedule: every retry of it again", async () => {
    const hook = await subscribe(["email.sent"]);
    await scriptAnswers(hook.name, Array(4).fill({ status: 500 }));
    await send({ to: uniqueRecipient() });
    await receivedBy(hook.name, 4);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "failed", attempts: 4 }), poll);
    const [event] = await eventRows(hook.id);
    await scriptAnswers(hook.name, [{ status: 500 }, { status: 500 }]);
    expect((await api(`/v1/webhooks/${hook.id}/events/${event!.id}/replay`, { method: "POST", key: HOOKS_KEY })).status).toBe(200);
    expect((await receivedBy(hook.name, 7)).map((d) => d.answered)).toEqual([500, 500, 500, 500, 500, 500, 200]);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success", attempts: 7, round_start: 4 }), poll);
  });

  it("are refused while an attempt holds the event's claim, and change nothing", async () => {
    const { hook, event } = await hookWithPendingEvent();
    const expires = new Date(Date.now() + 30_000).toISOString();
    await env.DB.prepare("UPDATE webhook_events SET status = 'attempting', attempts = 1, next_attempt_at = ? WHERE id = ?").bind(expires, event.id).run();
    const res = await api(`/v1/webhooks/${hook.id}/events/${event.id}/replay`, { method: "POST", key: HOOKS_KEY });
    expect(res.status).toBe(409);
    expect((await res.json<{ message: string }>()).message).toBe("an attempt to deliver this event is under way; replay it once it is over");
    expect((await eventRows(hook.id))[0]).toMatchObject({ status: "attempting", attempts: 1, round_start: 0, next_attempt_at: expires });
  });
});

describe("the webhook sweep", () => {
  it("requeues events overdue by more than the grace, attempts whose claim expired long ago included, and leaves the rest alone", async () => {
    const { event: stuck } = await hookWithPendingEvent();
    const { event: recent } = await hookWithPendingEvent();
    const config = parseConfig(env as unknown as Record<string, unknown>);
    const longAgo = new Date(Date.now() - (config.sweepGraceSeconds + 60) * 1000).toISOString();
    await env.DB.batch([
      env.DB.prepare("UPDATE webhook_events SET status = 'attempting', attempts = 1, next_attempt_at = ? WHERE id = ?").bind(longAgo, stuck.id),
      // Due a second ago: well within the grace, its job is still on its way.
      env.DB.prepare("UPDATE webhook_events SET next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() - 1000).toISOString(), recent.id),
    ]);
    const { ids, queue } = capturingQueue();
    await sweepWebhookEvents({ db: env.DB, webhooks: queue as unknown as Queue<WebhookJob>, config, log: createLogger({}) });
    expect(ids).toContain(stuck.id);
    expect(ids).not.toContain(recent.id);
  });
});

describe("new events on the queue", () => {
  it("queues only the events the write just made, not an earlier one of the same message still waiting for its lost job", async () => {
    const hook = await subscribe(["email.delivery_delayed", "email.sent"]);
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("busy"), apiKeyName: "hooks" }); // 452 once, then accepted
    await deliver([id], { WEBHOOKS: noQueue });
    const [delayed] = await eventRows(hook.id);
    expect(delayed).toMatchObject({ type: "email.delivery_delayed", status: "pending", attempts: 0 });
    const { ids, queue } = capturingQueue();
    await deliver([id], { WEBHOOKS: queue });
    const sent = (await eventRows(hook.id)).find((r) => r.type === "email.sent");
    expect(sent).toBeDefined();
    expect(ids).toEqual([sent!.id]);
  });
});

describe("which history makes which event", () => {
  it("makes no email.scheduled for a send that is not scheduled", async () => {
    const hook = await subscribe(["email.scheduled"]);
    const { id } = await insertQueuedMessage({ to: uniqueRecipient(), apiKeyName: "hooks" });
    await deliver([id]);
    expect(await (await api(`/v1/emails/${id}`, { key: HOOKS_KEY })).json<EmailView>()).toMatchObject({ status: "sent" });
    expect(await eventRows(hook.id)).toEqual([]);
  });

  it("makes no email.failed when the retry window ends for a message some recipient got: only its email.sent", async () => {
    const hook = await subscribe(["email.failed", "email.sent"]);
    const { id } = await insertQueuedMessage({ to: [uniqueRecipient("good"), uniqueRecipient("tempfail")], createdAt: new Date(Date.now() - 73 * 3600_000).toISOString(), apiKeyName: "hooks" });
    await deliver([id]);
    const history = await env.DB.prepare("SELECT type FROM events WHERE message_id = ? ORDER BY seq").bind(id).all<{ type: string }>();
    expect(history.results.map((e) => e.type)).toEqual(["accepted", "sent", "failed"]);
    const [delivery] = await receivedBy(hook.name, 1);
    expect(verified(delivery!, hook.signing_secret)).toMatchObject({ type: "email.sent", data: { email_id: id } });
    expect((await eventRows(hook.id)).map((r) => r.type)).toEqual(["email.sent"]);
    await delivered(hook.id, 1);
  });

  it("makes email.failed for an attempt that fails with no recipient left to try", async () => {
    const hook = await subscribe(["email.failed"]);
    const { id } = await insertQueuedMessage({ to: uniqueRecipient(), apiKeyName: "hooks" });
    const claim = await claimMessage(env.DB, id, { now: new Date(), leaseMs: 60_000 });
    if (claim.kind !== "claimed") throw new Error(`not claimed: ${claim.kind}`);
    expect(await recordFailure(env.DB, { id, attempt: claim.attempt, at: new Date().toISOString(), reason: "no recipient is left to send to", recipients: [] })).toBe(true);
    const history = await env.DB.prepare("SELECT type, detail FROM events WHERE message_id = ? ORDER BY seq").bind(id).all<{ type: string; detail: string | null }>();
    expect(history.results.map((e) => e.type)).toEqual(["accepted", "failed"]);
    expect((await eventRows(hook.id)).map((r) => [r.type, r.message_id])).toEqual([["email.failed", id]]);
  });

  it("writes no failed history for a retrying attempt, even one that gave up on a recipient", async () => {
    const { id } = await insertQueuedMessage({ to: ["a@example.com", "b@example.com"], apiKeyName: "hooks" });
    const claim = await claimMessage(env.DB, id, { now: new Date(), leaseMs: 60_000 });
    if (claim.kind !== "claimed") throw new Error(`not claimed: ${claim.kind}`);
    const at = new Date().toISOString();
    const recipients = [
      { address: "a@example.com", status: "failed" as const, smtpCode: 553, detail: "MAIL FROM answered 553 sender rejected" },
      { address: "b@example.com", status: "deferred" as const, smtpCode: 451, detail: "RCPT TO:<b@example.com> answered 451 try later" },
    ];
    expect(await recordRetry(env.DB, { id, attempt: claim.attempt, at, reason: "MAIL FROM answered 553 sender rejected", nextAttemptAt: new Date(Date.now() + 3600_000).toISOString(), recipients })).toBe(true);
    const history = await env.DB.prepare("SELECT type FROM events WHERE message_id = ? ORDER BY seq").bind(id).all<{ type: string }>();
    expect(history.results.map((e) => e.type)).toEqual(["accepted", "deferred"]);
  });

  it("sends email.failed when a dead letter closes the retry window of a message nobody got", async () => {
    const hook = await subscribe(["email.failed"]);
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("tempfail"), createdAt: new Date(Date.now() - 73 * 3600_000).toISOString(), apiKeyName: "hooks" });
    await env.DB.prepare("UPDATE messages SET status = 'retrying', attempts = 3, last_error = 'RCPT TO answered 451', next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() + 3600_000).toISOString(), id).run();
    await runQueue("mailroom-dead-letter", [id]);
    const [delivery] = await receivedBy(hook.name, 1);
    expect(verified(delivery!, hook.signing_secret)).toMatchObject({ type: "email.failed", data: { email_id: id, failed: { reason: expect.stringMatching(/^retry window of 72 h ended/) } } });
    await delivered(hook.id, 1);
  });
});

describe("the webhooks API, more", () => {
  it("checks a changed endpoint as it checks a new one", async () => {
    const hook = await subscribe(["email.sent"]);
    for (const endpoint of ["https://10.0.0.1/x", "https://[fe80::1]/x", "ftp://hooks.example.com/x", "https://printer.local/x"]) {
      const res = await api(`/v1/webhooks/${hook.id}`, { method: "PATCH", json: { endpoint }, key: HOOKS_KEY });
      expect(res.status, endpoint).toBe(422);
    }
    expect(await (await api(`/v1/webhooks/${hook.id}`, { key: HOOKS_KEY })).json()).toMatchObject({ endpoint: hook.url });
    const moved = newEndpoint("moved");
    expect((await api(`/v1/webhooks/${hook.id}`, { method: "PATCH", json: { endpoint: moved.url }, key: HOOKS_KEY })).status).toBe(200);
    expect(await (await api(`/v1/webhooks/${hook.id}`, { key: HOOKS_KEY })).json()).toMatchObject({ endpoint: moved.url });
  });

  it("shows a webhook only its own events and their attempts", async () => {
    const [first, second] = [await subscribe(["email.sent"]), await subscribe(["email.sent"])];
    await send({ to: uniqueRecipient() });
    await Promise.all([delivered(first.id, 1), delivered(second.id, 1)]);
    const [[mine], [theirs]] = [await eventRows(first.id), await eventRows(second.id)];
    const list = await (await api(`/v1/webhooks/${first.id}/events`, { key: HOOKS_KEY })).json<EventList>();
    expect(list.data.map((e) => e.id)).toEqual([mine!.id]);
    for (const path of [`/events/${theirs!.id}`, `/events/${theirs!.id}/attempts`]) {
      expect((await api(`/v1/webhooks/${first.id}${path}`, { key: HOOKS_KEY })).status, path).toBe(404);
      expect((await api(`/v1/webhooks/${second.id}${path}`, { key: HOOKS_KEY })).status, path).toBe(200);
    }
    expect((await api(`/v1/webhooks/${first.id}/events/${theirs!.id}/replay`, { method: "POST", key: HOOKS_KEY })).status).toBe(404);
  });

  it("counts only the key's own webhooks toward its 20", async () => {
    await subscribe(["email.sent"], OTHER_KEY);
    for (let i = 0; i < 20; i++) await subscribe(["email.sent"]);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM webhooks WHERE api_key_name = 'hooks'").first("n")).toBe(20);
  });

  it("keeps a rotated-out secret for 24 hours", async () => {
    const hook = await subscribe(["email.sent"]);
    const before = Date.now();
    expect((await api(`/v1/webhooks/${hook.id}/signing-secret/rotate`, { method: "POST", key: HOOKS_KEY })).status).toBe(200);
    const after = Date.now();
    const row = await webhookRow(hook.id);
    expect(row!.previous_secret).toBe(hook.signing_secret);
    const until = Date.parse(row!.previous_secret_until!);
    expect(until).toBeGreaterThanOrEqual(before + 24 * 3600_000);
    expect(until).toBeLessThanOrEqual(after + 24 * 3600_000);
  });
});

describe("GET /v1/emails, more", () => {
  it("names last_event by the latest event that is not an interruption", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient(), apiKeyName: "hooks" });
    const at = new Date().toISOString();
    await env.DB.batch([
      env.DB.prepare("UPDATE messages SET status = 'retrying', attempts = 2, next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() + 3600_000).toISOString(), id),
      env.DB.prepare("INSERT INTO events (message_id, seq, at, type, attempt, detail) VALUES (?, 2, ?, 'deferred', 1, 'RCPT TO answered 451')").bind(id, at),
      env.DB.prepare("INSERT INTO events (message_id, seq, at, type, attempt, detail) VALUES (?, 3, ?, 'interrupted', 2, 'attempt 2 ended without recording its outcome')").bind(id, at),
    ]);
    const list = await (await api("/v1/emails?limit=100", { key: HOOKS_KEY })).json<{ data: { id: string; last_event: string }[] }>();
    expect(list.data.find((e) => e.id === id)).toMatchObject({ last_event: "delivery_delayed" });
  });
});
