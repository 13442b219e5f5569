// Scheduled sends as Resend names them: scheduled_at on POST, PATCH to move it, POST .../cancel to
// cancel. A scheduled message goes when its time comes (the queue delays its job, at most 12 h at a time;
// the sweep covers a lost job), never before; a canceled one never; and nothing an attempt holds or
// that reached someone is changed.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { OutboxJob } from "../../src/delivery/outbox";
import worker from "../../src/index";
import { API_KEY, api, captureLogs, inboxMessages, uniqueRecipient } from "../helpers/api";
import { claimMessage, deliver, insertQueuedMessage, loadMessage, recordRetry } from "../helpers/factories";

type EmailView = { status: string; scheduled_at: string | null; sent_at: string | null; events: { type: string; detail: string | null }[]; recipients: { status: string }[] };
const view = async (id: string) => (await api(`/v1/emails/${id}`)).json<EmailView>();
const inSeconds = (s: number) => new Date(Date.now() + s * 1000).toISOString();

async function schedule(to: string, scheduledAt: string): Promise<string> {
  const res = await api("/v1/emails", { method: "POST", json: { to, subject: "Later", text: "x", scheduled_at: scheduledAt } });
  expect(res.status).toBe(202);
  const body = await res.json<{ id: string; status: string }>();
  expect(body.status).toBe("scheduled");
  return body.id;
}

/** PATCH /v1/emails/{id} with another outbox binding (one that records or refuses jobs). */
async function patch(id: string, json: unknown, outbox: Queue): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`https://mailroom.test/v1/emails/${id}`, { method: "PATCH", headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" }, body: JSON.stringify(json) }),
    { ...env, OUTBOX: outbox } as Env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

describe("scheduled sends", () => {
  it("delivers a message scheduled 2 s ahead after its time, not before", async () => {
    const to = uniqueRecipient("soon");
    const at = inSeconds(2);
    const id = await schedule(to, at);
    expect(await view(id)).toMatchObject({ status: "scheduled", scheduled_at: at });

    const sent = await vi.waitFor(
      async () => {
        const email = await view(id);
        if (email.status !== "sent") throw new Error(`status is ${email.status}`);
        return email;
      },
      { timeout: 10_000, interval: 50 },
    );
    const [mail] = await inboxMessages(to);
    expect(Date.parse(mail!.receivedAt)).toBeGreaterThanOrEqual(Date.parse(at));
    expect(Date.parse(sent.sent_at!)).toBeGreaterThanOrEqual(Date.parse(at));
  });

  it("does not send when a job comes early; it puts the job back for the scheduled time", async () => {
    const to = uniqueRecipient("early");
    const id = await schedule(to, inSeconds(3600));
    const send = vi.spyOn(env.OUTBOX, "send");
    try {
      const { result } = await deliver([id]);
      expect(result.explicitAcks).toEqual([`job-${id}`]);
      const [[, options]] = send.mock.calls as unknown as [[unknown, QueueSendOptions]];
      expect(options.delaySeconds).toBeGreaterThan(3590);
    } finally {
      send.mockRestore();
    }
    expect((await view(id)).status).toBe("scheduled");
    expect(await inboxMessages(to)).toEqual([]);
  });

  it("queues a send more than 12 hours ahead for 12 hours, the most a queue delays", async () => {
    const send = vi.spyOn(env.OUTBOX, "send");
    try {
      await schedule(uniqueRecipient("far"), inSeconds(20 * 86_400));
      expect((send.mock.calls[0]![1] as QueueSendOptions).delaySeconds).toBe(43_200);
    } finally {
      send.mockRestore();
    }
  });

  it("sends at once when scheduled_at has already passed", async () => {
    const res = await api("/v1/emails", { method: "POST", json: { to: uniqueRecipient("past"), subject: "Now", text: "x", scheduled_at: "2020-01-01T00:00:00Z" } });
    expect(await res.json()).toMatchObject({ status: "queued" });
  });

  it("reschedules, then cancels: the message is canceled, never sent, and says so", async () => {
    const to = uniqueRecipient("moved");
    const id = await schedule(to, inSeconds(3600));
    const later = inSeconds(7200);

    const moved = await api(`/v1/emails/${id}`, { method: "PATCH", json: { scheduled_at: later } });
    expect(moved.status).toBe(200);
    expect(await moved.json()).toEqual({ object: "email", id });
    expect(await view(id)).toMatchObject({ status: "scheduled", scheduled_at: later });

    const canceled = await api(`/v1/emails/${id}/cancel`, { method: "POST" });
    expect(canceled.status).toBe(200);
    expect(await canceled.json()).toEqual({ object: "email", id, status: "canceled" });

    await deliver([id]); // a job that still comes finds nothing to send
    const email = await view(id);
    expect(email.status).toBe("canceled");
    expect(email.events.map((e) => e.type)).toEqual(["accepted", "rescheduled", "canceled"]);
    expect(email.events[1]!.detail).toBe(`scheduled for ${later}`);
    expect(email.recipients).toEqual([expect.objectContaining({ status: "failed", detail: "canceled before delivery" })]);
    expect(await inboxMessages(to)).toEqual([]);
  });

  it("sends at once when rescheduled to a time that has passed", async () => {
    const to = uniqueRecipient("nowafterall");
    const id = await schedule(to, inSeconds(3600));
    expect((await api(`/v1/emails/${id}`, { method: "PATCH", json: { scheduled_at: "2020-01-01T00:00:00Z" } })).status).toBe(200);
    await vi.waitFor(async () => expect((await view(id)).status).toBe("sent"), { timeout: 10_000, interval: 50 });
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("queues a message rescheduled to a time that has passed (its window starting now), with a job due at once", async () => {
    const { id } = await insertQueuedMessage({ createdAt: new Date(Date.now() - 60_000).toISOString() });
    await env.DB.prepare("UPDATE messages SET status = 'scheduled', scheduled_at = ?1, next_attempt_at = ?1 WHERE id = ?2").bind(inSeconds(3600), id).run();
    const jobs: [OutboxJob, QueueSendOptions | undefined][] = [];
    const recording = { ...env.OUTBOX, send: async (job: OutboxJob, options?: QueueSendOptions) => void jobs.push([job, options]) } as unknown as Queue;
    const before = Date.now();
    const res = await patch(id, { scheduled_at: "2020-01-01T00:00:00Z" }, recording);
    expect(res.status).toBe(200);
    expect(jobs).toEqual([[{ id, request_id: expect.any(String) }, { delaySeconds: 0, contentType: "json" }]]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("queued");
    expect(Date.parse(message.scheduledAt!)).toBeGreaterThanOrEqual(before);
    expect(message.nextAttemptAt).toBe(message.scheduledAt);
    expect(events.map((e) => [e.type, e.detail])).toEqual([["accepted", null], ["rescheduled", "to be sent now"]]);
  });

  it("answers 200 to a reschedule whose job the queue refuses: the row is moved, and the sweep sends it when due", async () => {
    const { id } = await insertQueuedMessage();
    await env.DB.prepare("UPDATE messages SET status = 'scheduled', scheduled_at = ?1, next_attempt_at = ?1 WHERE id = ?2").bind(inSeconds(3600), id).run();
    const refusing = { ...env.OUTBOX, send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const later = inSeconds(7200);
    const logs = captureLogs();
    try {
      const res = await patch(id, { scheduled_at: later }, refusing);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ object: "email", id });
    } finally {
      logs.restore();
    }
    expect((await loadMessage(id)).message).toMatchObject({ status: "scheduled", scheduledAt: later, nextAttemptAt: later });
    expect(logs.lines.some((l) => l.includes("its job could not be queued"))).toBe(true);
  });

  it("cancels a queued message and a retrying one nobody has received", async () => {
    const queued = await insertQueuedMessage();
    expect((await api(`/v1/emails/${queued.id}/cancel`, { method: "POST" })).status).toBe(200);
    const retrying = await insertQueuedMessage({ createdAt: new Date(Date.now() - 60_000).toISOString() });
    await claimMessage(env.DB, retrying.id, { now: new Date(Date.now() - 30_000), leaseMs: 10_000 });
    await recordRetry(env.DB, { id: retrying.id, attempt: 1, at: new Date().toISOString(), reason: "451", nextAttemptAt: new Date().toISOString(), recipients: [] });
    expect((await api(`/v1/emails/${retrying.id}/cancel`, { method: "POST" })).status).toBe(200);
    await deliver([queued.id, retrying.id]);
    for (const { id, to } of [queued, retrying]) {
      expect((await loadMessage(id)).message.status).toBe("canceled");
      expect(await inboxMessages(to)).toEqual([]);
    }
  });

  it("refuses to cancel what was sent, what an attempt holds, and what reached some recipients (409), and unknown ids (404)", async () => {
    const sent = await insertQueuedMessage();
    await deliver([sent.id]);
    const sending = await insertQueuedMessage();
    await claimMessage(env.DB, sending.id, { now: new Date(), leaseMs: 600_000 });
    const partly = await insertQueuedMessage({ to: [uniqueRecipient(), uniqueRecipient("toomany")] });
    await deliver([partly.id]);

    const cases: [string, number, RegExp][] = [
      [sent.id, 409, /it is sent$/],
      [sending.id, 409, /a delivery attempt is in progress/],
      [partly.id, 409, /already been delivered to some recipients/],
      [crypto.randomUUID(), 404, /no email with id/],
      ["not-an-id", 404, /no email with id/],
    ];
    for (const [id, status, message] of cases) {
      const res = await api(`/v1/emails/${id}/cancel`, { method: "POST" });
      expect(res.status).toBe(status);
      expect((await res.json<{ error: { message: string } }>()).error.message).toMatch(message);
    }
    expect((await loadMessage(partly.id)).message.status).toBe("retrying");
    // A refused cancel fails no recipient: the one an attempt holds may still get the mail.
    expect((await loadMessage(sending.id)).recipients).toEqual([{ address: sending.to, status: "pending", smtpCode: null, detail: null }]);
    expect((await loadMessage(partly.id)).recipients.map((r) => [r.status, r.detail])).toEqual([
      ["sent", expect.stringMatching(/^Message queued as/)],
      ["deferred", expect.stringMatching(/552 5\.5\.3 Too many recipients$/)],
    ]);
  });

  it("reschedules only a scheduled message: 409 for a queued one, 404 unknown, 422 for a bad time", async () => {
    const queued = await insertQueuedMessage();
    const res = await api(`/v1/emails/${queued.id}`, { method: "PATCH", json: { scheduled_at: inSeconds(600) } });
    expect(res.status).toBe(409);
    expect((await res.json<{ error: { message: string } }>()).error.message).toBe("only a scheduled email can be rescheduled; it is queued");
    expect((await api(`/v1/emails/${crypto.randomUUID()}`, { method: "PATCH", json: { scheduled_at: inSeconds(600) } })).status).toBe(404);

    const id = await schedule(uniqueRecipient("badmove"), inSeconds(600));
    for (const body of [{ scheduled_at: "tomorrow" }, { scheduled_at: inSeconds(31 * 86_400) }, {}, { scheduled_at: inSeconds(60), subject: "x" }]) {
      const bad = await api(`/v1/emails/${id}`, { method: "PATCH", json: body });
      expect(bad.status).toBe(422);
    }
    expect((await view(id)).events.map((e) => e.type)).toEqual(["accepted"]);
  });

  it("is found by the sweep once its time has come if its job was lost", async () => {
    const { id, to } = await insertQueuedMessage({ createdAt: "2000-01-01T00:00:00.000Z" });
    await env.DB.prepare("UPDATE messages SET status = 'scheduled', scheduled_at = ?1, next_attempt_at = ?1 WHERE id = ?2").bind("2000-01-01T01:00:00.000Z", id).run();
    const ctx = createExecutionContext();
    const handler: ExportedHandler<Env, OutboxJob> = worker;
    await handler.scheduled!(createScheduledController(), env, ctx);
    await waitOnExecutionContext(ctx);
    await vi.waitFor(async () => expect((await loadMessage(id)).message.status).toBe("sent"), { timeout: 10_000, interval: 50 });
    expect(await inboxMessages(to)).toHaveLength(1);
  });
});
