// Webhooks end to end inside workerd: mail sent through the real API and delivered by the real consumer
// to the real inbox, history committed in real local D1, events queued on the real mailroom-webhooks queue
// and POSTed by its consumer to a real HTTP receiver on loopback (scripts/webhook-receiver.mjs), which
// can answer 500, 410 or 429 on demand. Every delivery is verified with the standardwebhooks package.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../../src/config";
import { sweepWebhookEvents, type WebhookJob } from "../../src/delivery/webhooks";
import mailroom from "../../src/index";
import { applyRetention } from "../../src/retention";
import { createLogger } from "../../src/log";
import type { WebhookDelivery } from "../../scripts/webhook-receiver.mjs";
import { api, fetchWorker, HOOKS_KEY, OTHER_KEY, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage } from "../helpers/factories";
import { createWebhook, newEndpoint, receivedBy, scriptAnswers } from "../helpers/webhooks";

type Payload = { type: string; created_at: string; data: Record<string, any> };
type EmailView = { status: string; last_event: string };

const created: string[] = [];
afterEach(async () => {
  // Deleted, so no later test's mail makes events for them.
  for (const id of created.splice(0)) await api(`/v1/webhooks/${id}`, { method: "DELETE", key: HOOKS_KEY });
});

async function subscribe(events: string[], prefix?: string) {
  const endpoint = newEndpoint(prefix);
  const webhook = await createWebhook(endpoint.url, events, HOOKS_KEY);
  created.push(webhook.id);
  return { ...endpoint, ...webhook };
}

async function send(json: Record<string, unknown>): Promise<string> {
  const res = await api("/v1/emails", { method: "POST", json: { subject: "Hook test", text: "x", tags: [{ name: "flow", value: "hooks" }], ...json }, key: HOOKS_KEY });
  expect(res.status).toBe(202);
  return (await res.json<{ id: string }>()).id;
}

const waitForStatus = (id: string, status: string) =>
  vi.waitFor(
    async () => {
      const email = await (await api(`/v1/emails/${id}`, { key: HOOKS_KEY })).json<EmailView>();
      if (email.status !== status) throw new Error(`status is ${email.status}`);
      return email;
    },
    { timeout: 10_000, interval: 20 },
  );

/** The payload of a delivery, after checking its signature as a receiver would. */
function verified(delivery: WebhookDelivery, secret: string): Payload {
  const headers = Object.fromEntries(Object.entries(delivery.headers).map(([k, v]) => [k, String(v)]));
  return new Webhook(secret).verify(delivery.body, headers) as Payload;
}

async function eventRows(webhookId: string) {
  const { results } = await env.DB.prepare("SELECT id, type, status, attempts, message_id FROM webhook_events WHERE webhook_id = ? ORDER BY created_at").bind(webhookId).all<{ id: string; type: string; status: string; attempts: number; message_id: string }>();
  return results;
}

describe("webhook events", () => {
  it("sends email.sent, signed (Standard Webhooks and svix-* alike), with Resend's payload", async () => {
    const hook = await subscribe(["email.sent"]);
    const to = uniqueRecipient();
    const id = await send({ to });
    const [delivery, ...more] = await receivedBy(hook.name, 1);
    expect(more).toEqual([]);
    const payload = verified(delivery!, hook.signing_secret);
    expect(payload).toEqual({
      type: "email.sent",
      created_at: expect.any(String),
      data: {
        email_id: id,
        created_at: expect.any(String),
        from: "Mailroom Tests <noreply@mailroom.test>",
        to: [to],
        subject: "Hook test",
        message_id: expect.stringMatching(/^<.+@mailroom\.test>$/),
        tags: { flow: "hooks" },
      },
    });
    expect(delivery!.headers["svix-id"]).toBe(delivery!.headers["webhook-id"]);
    expect(delivery!.headers["svix-signature"]).toBe(delivery!.headers["webhook-signature"]);
    expect(delivery!.headers["content-type"]).toBe("application/json");
    const rows = await eventRows(hook.id);
    expect(rows).toMatchObject([{ id: delivery!.headers["webhook-id"], type: "email.sent", status: "success", attempts: 1, message_id: id }]);
  });

  it("sends email.bounced for each recipient refused for good, with the relay's reply, and email.sent for the one served", async () => {
    const hook = await subscribe(["email.sent", "email.bounced"]);
    const [good, gone] = [uniqueRecipient("good"), uniqueRecipient("reject")];
    const id = await send({ to: [good, gone] });
    const payloads = (await receivedBy(hook.name, 2)).map((d) => verified(d, hook.signing_secret));
    const bounce = payloads.find((p) => p.type === "email.bounced")!;
    expect(bounce.data).toMatchObject({
      email_id: id,
      to: [good, gone],
      recipient: gone,
      bounce: { type: "Permanent", subType: "NoEmail", message: `RCPT TO:<${gone}> answered 550 5.1.1 Recipient address rejected: user unknown` },
    });
    expect(payloads.map((p) => p.type).sort()).toEqual(["email.bounced", "email.sent"]);
  });

  it("sends email.delivery_delayed for a temporary refusal, then email.sent once it gets through", async () => {
    const hook = await subscribe(["email.delivery_delayed", "email.sent"]);
    const id = await send({ to: uniqueRecipient("busy") }); // the inbox answers 452 once, then accepts
    const payloads = (await receivedBy(hook.name, 2)).map((d) => verified(d, hook.signing_secret));
    expect(payloads.map((p) => p.type).sort()).toEqual(["email.delivery_delayed", "email.sent"]);
    expect(payloads.every((p) => p.data.email_id === id)).toBe(true);
    expect((await waitForStatus(id, "sent")).last_event).toBe("sent");
  });

  it("sends email.scheduled when a send is scheduled and email.canceled when it is canceled", async () => {
    const hook = await subscribe(["email.scheduled", "email.canceled"]);
    const id = await send({ to: uniqueRecipient(), scheduled_at: new Date(Date.now() + 3600_000).toISOString() });
    const [scheduled] = await receivedBy(hook.name, 1);
    expect(verified(scheduled!, hook.signing_secret)).toMatchObject({ type: "email.scheduled", data: { email_id: id } });
    expect((await api(`/v1/emails/${id}/cancel`, { method: "POST", key: HOOKS_KEY })).status).toBe(200);
    const [, canceled] = await receivedBy(hook.name, 2);
    expect(verified(canceled!, hook.signing_secret)).toMatchObject({ type: "email.canceled", data: { email_id: id } });
    expect((await waitForStatus(id, "canceled")).last_event).toBe("canceled");
  });

  it("sends email.failed, with the reason, when the retry window ends with nobody served", async () => {
    const hook = await subscribe(["email.failed"]);
    // Accepted 73 hours ago: this temporary refusal is past the 72-hour window.
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("tempfail"), createdAt: new Date(Date.now() - 73 * 3600_000).toISOString(), apiKeyName: "hooks" });
    await deliver([id]);
    const [delivery] = await receivedBy(hook.name, 1);
    const payload = verified(delivery!, hook.signing_secret);
    expect(payload).toMatchObject({ type: "email.failed", data: { email_id: id, failed: { reason: expect.stringMatching(/^retry window of 72 h ended after 1 attempt; last error: RCPT TO:<.*> answered 451/) } } });
  });

  it("sends only the types an endpoint subscribed to: no event is even made for the others", async () => {
    const hook = await subscribe(["email.bounced"]);
    const served = await send({ to: uniqueRecipient() });
    await waitForStatus(served, "sent");
    const bounced = await send({ to: uniqueRecipient("reject") });
    const [delivery, ...more] = await receivedBy(hook.name, 1);
    expect(more).toEqual([]);
    expect(verified(delivery!, hook.signing_secret).data.email_id).toBe(bounced);
    expect((await eventRows(hook.id)).map((r) => [r.type, r.message_id])).toEqual([["email.bounced", bounced]]);
  });
});

describe("webhook delivery", () => {
  it("retries an endpoint that answers 500 until it answers 200, with the same webhook-id, and lists the attempts", async () => {
    const hook = await subscribe(["email.sent"]);
    await scriptAnswers(hook.name, [{ status: 500, body: "boom" }, { status: 500, body: "boom again" }]);
    await send({ to: uniqueRecipient() });
    const deliveries = await receivedBy(hook.name, 3);
    expect(deliveries.map((d) => d.answered)).toEqual([500, 500, 200]);
    expect(new Set(deliveries.map((d) => d.headers["webhook-id"])).size).toBe(1);
    for (const d of deliveries) verified(d, hook.signing_secret);

    const eventId = String(deliveries[0]!.headers["webhook-id"]);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success", attempts: 3 }), { timeout: 10_000, interval: 20 });
    const attempts = await (await api(`/v1/webhooks/${hook.id}/events/${eventId}/attempts`, { key: HOOKS_KEY })).json<{ object: string; has_more: boolean; data: { id: string; http_status_code: number; response: string; sent_at: string }[] }>();
    expect(attempts).toMatchObject({ object: "list", has_more: false });
    // Newest first, as every Resend list.
    expect(attempts.data.map((a) => [a.http_status_code, a.response])).toEqual([[200, "ok"], [500, "boom again"], [500, "boom"]]);
    const event = await (await api(`/v1/webhooks/${hook.id}/events/${eventId}`, { key: HOOKS_KEY })).json<Record<string, unknown>>();
    expect(event).toMatchObject({ object: "webhook_event", id: eventId, type: "email.sent", status: "success", next_attempt_at: null, payload: JSON.parse(deliveries[0]!.body) });
  });

  it("gives up after the schedule (4 attempts with three delays): the event is failed for that endpoint", async () => {
    const hook = await subscribe(["email.sent"]);
    await scriptAnswers(hook.name, Array(4).fill({ status: 503, body: "down" }));
    await send({ to: uniqueRecipient() });
    expect((await receivedBy(hook.name, 4)).map((d) => d.answered)).toEqual([503, 503, 503, 503]);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "failed", attempts: 4 }), { timeout: 10_000, interval: 20 });
    const list = await (await api(`/v1/webhooks/${hook.id}/events`, { key: HOOKS_KEY })).json<{ data: { status: string }[] }>();
    expect(list.data).toMatchObject([{ type: "email.sent", status: "failed" }]);
    // The webhook itself stays enabled: one failed event is not a dead endpoint.
    expect(await (await api(`/v1/webhooks/${hook.id}`, { key: HOOKS_KEY })).json()).toMatchObject({ status: "enabled" });
  });

  it("disables the webhook at once when its endpoint answers 410 Gone", async () => {
    const hook = await subscribe(["email.sent"]);
    await scriptAnswers(hook.name, [{ status: 410, body: "gone" }]);
    await send({ to: uniqueRecipient() });
    expect((await receivedBy(hook.name, 1)).map((d) => d.answered)).toEqual([410]);
    await vi.waitFor(async () => expect(await (await api(`/v1/webhooks/${hook.id}`, { key: HOOKS_KEY })).json()).toMatchObject({ status: "disabled" }), { timeout: 10_000, interval: 20 });
    expect((await eventRows(hook.id))[0]).toMatchObject({ status: "failed", attempts: 1 });
    // A disabled webhook is sent no new events.
    const later = await send({ to: uniqueRecipient() });
    await waitForStatus(later, "sent");
    expect(await eventRows(hook.id)).toHaveLength(1);
  });

  it("disables a webhook whose deliveries have all failed for 5 days, on its next failure", async () => {
    const hook = await subscribe(["email.sent"]);
    await env.DB.prepare("UPDATE webhooks SET failing_since = ? WHERE id = ?").bind(new Date(Date.now() - 5 * 86_400_000 - 1000).toISOString(), hook.id).run();
    await scriptAnswers(hook.name, [{ status: 500 }]);
    await send({ to: uniqueRecipient() });
    await receivedBy(hook.name, 1);
    await vi.waitFor(async () => expect(await (await api(`/v1/webhooks/${hook.id}`, { key: HOOKS_KEY })).json()).toMatchObject({ status: "disabled" }), { timeout: 10_000, interval: 20 });
  });

  it("waits as long as a 429's Retry-After asks, within the schedule's longest delay", async () => {
    const hook = await subscribe(["email.sent"]);
    await scriptAnswers(hook.name, [{ status: 429, headers: { "Retry-After": "120" } }]);
    await send({ to: uniqueRecipient() });
    const [first] = await receivedBy(hook.name, 1);
    // The tests' schedule is 0,0,0: the longest delay is 0, so the retry is due at once, not in 120 s.
    const [, second] = await receivedBy(hook.name, 2);
    expect([first!.answered, second!.answered]).toEqual([429, 200]);
  });

  it("signs with both the new and the old secret for 24 hours after a rotation", async () => {
    const hook = await subscribe(["email.sent"]);
    const rotated = await (await api(`/v1/webhooks/${hook.id}/signing-secret/rotate`, { method: "POST", key: HOOKS_KEY })).json<{ object: string; id: string; signing_secret: string }>();
    expect(rotated).toMatchObject({ object: "webhook", id: hook.id, signing_secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/) });
    expect(rotated.signing_secret).not.toBe(hook.signing_secret);
    await send({ to: uniqueRecipient() });
    const [delivery] = await receivedBy(hook.name, 1);
    expect(String(delivery!.headers["webhook-signature"]).split(" ")).toHaveLength(2);
    expect(verified(delivery!, rotated.signing_secret).type).toBe("email.sent");
    expect(verified(delivery!, hook.signing_secret).type).toBe("email.sent");
    // A day later only the new one signs.
    await env.DB.prepare("UPDATE webhooks SET previous_secret_until = ? WHERE id = ?").bind(new Date(Date.now() - 1000).toISOString(), hook.id).run();
    await send({ to: uniqueRecipient() });
    const [, next] = await receivedBy(hook.name, 2);
    expect(verified(next!, rotated.signing_secret).type).toBe("email.sent");
    expect(() => verified(next!, hook.signing_secret)).toThrow();
  });

  it("replays an event with the same webhook-id", async () => {
    const hook = await subscribe(["email.sent"]);
    await send({ to: uniqueRecipient() });
    const [first] = await receivedBy(hook.name, 1);
    const eventId = String(first!.headers["webhook-id"]);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success" }), { timeout: 10_000, interval: 20 });
    const res = await api(`/v1/webhooks/${hook.id}/events/${eventId}/replay`, { method: "POST", key: HOOKS_KEY });
    expect(await res.json()).toEqual({ object: "webhook_event", id: eventId });
    const [, again] = await receivedBy(hook.name, 2);
    expect(again!.headers["webhook-id"]).toBe(eventId);
    expect(again!.body).toBe(first!.body);
  });

  it("delivers an event whose job was lost (the queue refused it) through the sweep, once", async () => {
    const hook = await subscribe(["email.sent"]);
    const { id } = await insertQueuedMessage({ to: uniqueRecipient(), apiKeyName: "hooks" });
    const refusing = { send: () => Promise.reject(new Error("Queue send failed: overloaded")), sendBatch: () => Promise.reject(new Error("Queue send failed: overloaded")) };
    await deliver([id], { WEBHOOKS: refusing });
    const [row] = await eventRows(hook.id);
    expect(row).toMatchObject({ type: "email.sent", status: "pending", attempts: 0, message_id: id });
    // Nothing is queued: once the event is overdue by more than the grace, a sweep finds it and queues it.
    const config = parseConfig(env as unknown as Record<string, unknown>);
    await env.DB.prepare("UPDATE webhook_events SET next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() - (config.sweepGraceSeconds + 1) * 1000).toISOString(), row!.id).run();
    const swept = await sweepWebhookEvents({ db: env.DB, webhooks: env.WEBHOOKS, config, log: createLogger({}) });
    expect(swept).toBeGreaterThanOrEqual(1);
    const [delivery, ...more] = await receivedBy(hook.name, 1);
    expect(more).toEqual([]);
    expect(delivery!.headers["webhook-id"]).toBe(row!.id);
  });

  it("makes no event when D1 refuses the outcome's write, and exactly one when the write is retried", async () => {
    const hook = await subscribe(["email.sent"]);
    const { id } = await insertQueuedMessage({ to: uniqueRecipient(), apiKeyName: "hooks" });
    let failed = 0;
    const flakyDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: (statements: D1PreparedStatement[]) => {
        // The outcome's batch (5 statements, as the claim's before it): refused once.
        if (statements.length === 5 && ++failed === 2) return Promise.reject(new Error("D1_ERROR: Network connection lost."));
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    await deliver([id], { DB: flakyDb });
    expect(failed).toBeGreaterThanOrEqual(3);
    const [delivery, ...more] = await receivedBy(hook.name, 1);
    expect(more).toEqual([]);
    expect(verified(delivery!, hook.signing_secret).data.email_id).toBe(id);
    expect(await eventRows(hook.id)).toHaveLength(1);
  });
});

describe("webhook jobs and retention", () => {
  it("drops a duplicate job for an event another job is delivering: the endpoint gets it once", async () => {
    const hook = await subscribe(["email.sent"]);
    const { id } = await insertQueuedMessage({ to: uniqueRecipient(), apiKeyName: "hooks" });
    await deliver([id], { WEBHOOKS: { send: async () => {}, sendBatch: async () => {} } }); // its job is "lost"
    const [row] = await eventRows(hook.id);
    const batch = createMessageBatch<WebhookJob>("mailroom-webhooks", [1, 2].map((n) => ({ id: `job-${n}`, timestamp: new Date(), attempts: 1, body: { id: row!.id } })));
    const ctx = createExecutionContext();
    await (mailroom as ExportedHandler<Env, WebhookJob>).queue!(batch, env, ctx);
    expect((await getQueueResult(batch, ctx)).explicitAcks.sort()).toEqual(["job-1", "job-2"]);
    expect(await receivedBy(hook.name, 1)).toHaveLength(1);
    expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success", attempts: 1 });
  });

  it("acknowledges dead-lettered webhook jobs: their events stay due, for the sweep", async () => {
    const hook = await subscribe(["email.sent"]);
    const { id } = await insertQueuedMessage({ to: uniqueRecipient(), apiKeyName: "hooks" });
    await deliver([id], { WEBHOOKS: { send: async () => {}, sendBatch: async () => {} } });
    const [row] = await eventRows(hook.id);
    const batch = createMessageBatch<WebhookJob>("mailroom-webhooks-dead-letter", [{ id: "dead-1", timestamp: new Date(), attempts: 11, body: { id: row!.id } }]);
    const ctx = createExecutionContext();
    await (mailroom as ExportedHandler<Env, WebhookJob>).queue!(batch, env, ctx);
    expect(await getQueueResult(batch, ctx)).toMatchObject({ ackAll: true, retryBatch: { retry: false } });
    expect((await eventRows(hook.id))[0]).toMatchObject({ status: "pending", attempts: 0 });
  });

  it("deletes delivered and failed events older than RETENTION_DAYS with their attempts, and keeps the rest", async () => {
    const hook = await subscribe(["email.sent"]);
    for (let i = 0; i < 3; i++) await send({ to: uniqueRecipient() });
    await receivedBy(hook.name, 3);
    await vi.waitFor(async () => expect((await eventRows(hook.id)).every((r) => r.status === "success")).toBe(true), { timeout: 10_000, interval: 20 });
    const [old, oldPending, young] = await eventRows(hook.id);
    const longAgo = new Date(Date.now() - 31 * 86_400_000).toISOString();
    await env.DB.batch([
      env.DB.prepare("UPDATE webhook_events SET created_at = ? WHERE id IN (?, ?)").bind(longAgo, old!.id, oldPending!.id),
      env.DB.prepare("UPDATE webhook_events SET status = 'pending', next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() + 3600_000).toISOString(), oldPending!.id),
    ]);
    await applyRetention({ db: env.DB, attachments: env.ATTACHMENTS, config: parseConfig(env as unknown as Record<string, unknown>), log: createLogger({}) });
    expect((await eventRows(hook.id)).map((r) => r.id).sort()).toEqual([oldPending!.id, young!.id].sort());
    const attempts = await env.DB.prepare("SELECT event_id FROM webhook_attempts WHERE event_id IN (?, ?, ?)").bind(old!.id, oldPending!.id, young!.id).all<{ event_id: string }>();
    expect(attempts.results.map((r) => r.event_id).sort()).toEqual([oldPending!.id, young!.id].sort());
  });
});

describe("the webhooks API", () => {
  it("allows a key 20 webhooks: the 21st is a 409 and stores nothing", async () => {
    for (let i = 0; i < 20; i++) await subscribe(["email.sent"]);
    const res = await api("/v1/webhooks", { method: "POST", json: { endpoint: newEndpoint().url, events: ["email.sent"] }, key: HOOKS_KEY });
    expect(res.status).toBe(409);
    expect((await res.json<{ message: string }>()).message).toBe("a key may have at most 20 webhooks; delete one first");
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM webhooks WHERE api_key_name = 'hooks'").first("n")).toBe(20);
  });

  it("refuses to replay an event of a disabled webhook, and replays it once the webhook is enabled again", async () => {
    const hook = await subscribe(["email.sent"]);
    await send({ to: uniqueRecipient() });
    const [first] = await receivedBy(hook.name, 1);
    const eventId = String(first!.headers["webhook-id"]);
    await vi.waitFor(async () => expect((await eventRows(hook.id))[0]).toMatchObject({ status: "success" }), { timeout: 10_000, interval: 20 });
    await api(`/v1/webhooks/${hook.id}`, { method: "PATCH", json: { status: "disabled" }, key: HOOKS_KEY });
    expect((await api(`/v1/webhooks/${hook.id}/events/${eventId}/replay`, { method: "POST", key: HOOKS_KEY })).status).toBe(409);
    await api(`/v1/webhooks/${hook.id}`, { method: "PATCH", json: { status: "enabled" }, key: HOOKS_KEY });
    expect((await api(`/v1/webhooks/${hook.id}/events/${eventId}/replay`, { method: "POST", key: HOOKS_KEY })).status).toBe(200);
    const [, again] = await receivedBy(hook.name, 2);
    expect(again!.headers["webhook-id"]).toBe(eventId);
  });

  it("creates, reads, lists, changes and deletes a webhook, as Resend's SDK expects", async () => {
    const endpoint = newEndpoint();
    const res = await api("/v1/webhooks", { method: "POST", json: { endpoint: endpoint.url, events: ["email.sent", "email.bounced", "email.sent"] }, key: HOOKS_KEY });
    expect(res.status).toBe(201);
    const { id, signing_secret, object } = await res.json<{ id: string; signing_secret: string; object: string }>();
    created.push(id);
    expect(object).toBe("webhook");
    expect(signing_secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(await (await api(`/v1/webhooks/${id}`, { key: HOOKS_KEY })).json()).toEqual({
      object: "webhook",
      id,
      created_at: expect.any(String),
      status: "enabled",
      endpoint: endpoint.url,
      events: ["email.sent", "email.bounced"],
      signing_secret,
    });
    const patched = await api(`/v1/webhooks/${id}`, { method: "PATCH", json: { events: ["email.failed"], status: "disabled" }, key: HOOKS_KEY });
    expect(await patched.json()).toEqual({ object: "webhook", id });
    const list = await (await api("/v1/webhooks", { key: HOOKS_KEY })).json<{ object: string; has_more: boolean; data: unknown[] }>();
    expect(list).toMatchObject({ object: "list", has_more: false });
    expect(list.data).toContainEqual({ id, endpoint: endpoint.url, created_at: expect.any(String), status: "disabled", events: ["email.failed"] });
    expect(await (await api(`/v1/webhooks/${id}`, { method: "DELETE", key: HOOKS_KEY })).json()).toEqual({ object: "webhook", id, deleted: true });
    expect((await api(`/v1/webhooks/${id}`, { key: HOOKS_KEY })).status).toBe(404);
  });

  it("pages the list newest first with limit, after and before", async () => {
    const hooks = [];
    for (let i = 0; i < 3; i++) hooks.push(await subscribe(["email.sent"]));
    const [oldest, middle, newest] = hooks.map((h) => h.id);
    const page = async (query: string) => (await api(`/v1/webhooks${query}`, { key: HOOKS_KEY })).json<{ has_more: boolean; data: { id: string }[] }>();
    expect(await page("?limit=2")).toMatchObject({ has_more: true, data: [{ id: newest }, { id: middle }] });
    expect(await page(`?limit=2&after=${middle}`)).toMatchObject({ has_more: false, data: [{ id: oldest }] });
    expect(await page(`?limit=1&before=${oldest}`)).toMatchObject({ has_more: true, data: [{ id: middle }] });
    for (const query of ["?limit=0", "?limit=101", "?limit=x", `?after=${middle}&before=${oldest}`, `?after=${crypto.randomUUID()}`, "?page=2"]) {
      expect((await api(`/v1/webhooks${query}`, { key: HOOKS_KEY })).status, query).toBe(422);
    }
  });

  it("keeps each key's webhooks to itself: another key's is a 404, and its mail makes no events for them", async () => {
    const hook = await subscribe(["email.sent"]);
    for (const [method, path] of [["GET", ""], ["PATCH", ""], ["DELETE", ""], ["POST", "/signing-secret/rotate"], ["GET", "/events"]] as const) {
      const res = await api(`/v1/webhooks/${hook.id}${path}`, { method, key: OTHER_KEY, ...(method === "PATCH" ? { json: { status: "disabled" } } : {}) });
      expect(res.status, `${method} ${path}`).toBe(404);
    }
    const theirs = await (await api("/v1/webhooks", { key: OTHER_KEY })).json<{ data: { id: string }[] }>();
    expect(theirs.data.map((w) => w.id)).not.toContain(hook.id);
    const res = await api("/v1/emails", { method: "POST", json: { to: uniqueRecipient(), subject: "theirs", text: "x" }, key: OTHER_KEY });
    await waitForOther((await res.json<{ id: string }>()).id);
    expect(await eventRows(hook.id)).toEqual([]);
    expect(await (await api(`/v1/webhooks/${hook.id}`, { key: HOOKS_KEY })).json()).toMatchObject({ status: "enabled" });
  });

  it("refuses unknown event types, bad endpoints and unknown fields with a 422, storing nothing", async () => {
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM webhooks").first<{ n: number }>();
    const cases: [unknown, string][] = [
      [{ endpoint: newEndpoint().url, events: ["email.opened"] }, "events.0"],
      [{ endpoint: newEndpoint().url, events: [] }, "events"],
      [{ endpoint: newEndpoint().url }, "events"],
      [{ endpoint: "not a url", events: ["email.sent"] }, "endpoint"],
      [{ endpoint: "ftp://example.com/x", events: ["email.sent"] }, "endpoint"],
      [{ endpoint: "https://user:pw@example.com/x", events: ["email.sent"] }, "endpoint"],
      [{ endpoint: newEndpoint().url, events: ["email.sent"], secret: "mine" }, "(body)"],
    ];
    for (const [json, path] of cases) {
      const res = await api("/v1/webhooks", { method: "POST", json, key: HOOKS_KEY });
      expect(res.status, JSON.stringify(json)).toBe(422);
      expect((await res.json<{ error: { issues: { path: string }[] } }>()).error.issues.map((i) => i.path), JSON.stringify(json)).toContain(path);
    }
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM webhooks").first<{ n: number }>()).toEqual(before);
  });

  it("refuses http:// and private, loopback and local endpoints outside development", async () => {
    const production = { ...env, ENVIRONMENT: "production", RETRY_BASE_DELAY_SECONDS: "30", WEBHOOK_RETRY_DELAYS_SECONDS: "5" } as Env;
    const post = (endpoint: string) =>
      fetchWorker(
        new Request("https://mailroom.test/v1/webhooks", {
          method: "POST",
          headers: { Authorization: `Bearer ${HOOKS_KEY}`, "Content-Type": "application/json" },
          body: JSON.stringify({ endpoint, events: ["email.sent"] }),
        }),
        production,
      );
    for (const endpoint of ["http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x", "https://[::1]/x", "https://[::ffff:192.168.0.1]/x", "https://localhost/x", "https://api.localhost/x", "https://169.254.169.254/latest"]) {
      const res = await post(endpoint);
      expect(res.status, endpoint).toBe(422);
    }
    const res = await post("https://hooks.example.com/mailroom");
    expect(res.status).toBe(201);
    created.push((await res.json<{ id: string }>()).id);
  });
});

describe("GET /v1/emails", () => {
  it("lists a key's own emails newest first, with last_event, and pages them", async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await send({ to: uniqueRecipient("list"), scheduled_at: new Date(Date.now() + 3600_000).toISOString() }));
    const [oldest, middle, newest] = ids;
    const page = async (query: string, key = HOOKS_KEY) => (await api(`/v1/emails${query}`, { key })).json<{ object: string; has_more: boolean; data: Record<string, unknown>[] }>();
    const first = await page("?limit=2");
    expect(first).toMatchObject({ object: "list", has_more: true });
    expect(first.data.map((e) => e.id)).toEqual([newest, middle]);
    expect(first.data[0]).toEqual({
      id: newest,
      message_id: expect.any(String),
      from: "Mailroom Tests <noreply@mailroom.test>",
      to: [expect.stringMatching(/^list-/)],
      cc: [],
      bcc: [],
      reply_to: [],
      subject: "Hook test",
      created_at: expect.any(String),
      scheduled_at: expect.any(String),
      last_event: "scheduled",
    });
    expect((await page(`?limit=1&after=${middle}`)).data.map((e) => e.id)).toEqual([oldest]);
    expect((await page(`?limit=2&before=${oldest}`)).data.map((e) => e.id)).toEqual([newest, middle]);
    // Another key sees none of them, and may not page from one.
    expect((await page("?limit=100", OTHER_KEY)).data.map((e) => e.id)).not.toContain(newest);
    expect((await api(`/v1/emails?after=${newest}`, { key: OTHER_KEY })).status).toBe(422);
    for (const id of ids) await api(`/v1/emails/${id}/cancel`, { method: "POST", key: HOOKS_KEY });
    expect((await page("?limit=1")).data[0]!.last_event).toBe("canceled");
  });
});

async function waitForOther(id: string) {
  await vi.waitFor(
    async () => {
      const email = await (await api(`/v1/emails/${id}`, { key: OTHER_KEY })).json<EmailView>();
      if (email.status !== "sent") throw new Error(`status is ${email.status}`);
    },
    { timeout: 10_000, interval: 20 },
  );
}
