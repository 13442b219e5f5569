// The official `resend` npm SDK, unchanged, against a real `wrangler dev`: only RESEND_BASE_URL points
// at Mailroom's /v1. emails.send with an idempotencyKey twice sends one mail; scheduled sends are
// moved with emails.update and stopped with emails.cancel; a send too far ahead is refused; emails.list
// pages; webhooks.create subscribes a real receiver on loopback (ENVIRONMENT=development allows it),
// whose deliveries webhooks.verify accepts, and the rest of webhooks.* and webhooks.events.* work.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { Resend } from "resend";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWebhookReceiver, type WebhookReceiver } from "../../scripts/webhook-receiver.mjs";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.mjs";
import { createStack, type Stack } from "../helpers/e2e-stack";

let stack: Stack;
let wrangler: WranglerDev | undefined;
let resend: Resend;
let receiver: WebhookReceiver;
const previousBaseUrl = process.env.RESEND_BASE_URL;

beforeAll(async () => {
  stack = await createStack({ vars: { ENVIRONMENT: "development" } });
  receiver = await startWebhookReceiver();
  wrangler = await startWranglerDev(stack.options);
  process.env.RESEND_BASE_URL = `${wrangler.url}/v1`;
  resend = new Resend(stack.apiKey);
});

afterAll(async () => {
  if (previousBaseUrl === undefined) delete process.env.RESEND_BASE_URL;
  else process.env.RESEND_BASE_URL = previousBaseUrl;
  await wrangler?.stop();
  await receiver?.close();
  await stack?.close();
});

const recipient = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}@example.com`;
const received = (to: string) => stack.inbox.messages.filter((m) => m.envelope.to.includes(to));

async function statusOf(id: string): Promise<{ status: string; scheduled_at: string | null }> {
  const { data, error } = await resend.emails.get(id);
  if (error) throw new Error(JSON.stringify(error));
  return data as unknown as { status: string; scheduled_at: string | null };
}

async function waitForStatus(id: string, wanted: string) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const { status } = await statusOf(id);
    if (status === wanted) return;
    if (Date.now() > deadline) throw new Error(`email ${id} is still ${status}, not ${wanted}`);
    await delay(100);
  }
}

describe("the resend SDK against Mailroom", () => {
  it("emails.send twice with one idempotencyKey: the same id, one mail", async () => {
    const to = recipient("sdk-idem");
    const email = { from: "Acme <noreply@mailroom.test>", to, subject: "Your receipt", text: "Thanks" };
    const idempotencyKey = `receipt-${randomUUID()}`;
    const first = await resend.emails.send(email, { idempotencyKey });
    expect(first.error).toBeNull();
    const second = await resend.emails.send(email, { idempotencyKey });
    expect(second.error).toBeNull();
    expect(second.data!.id).toBe(first.data!.id);

    await waitForStatus(first.data!.id, "sent");
    expect(received(to)).toHaveLength(1);
  });

  it("emails.send with cc, bcc, replyTo, headers, tags and an attachment: sent, bcc only in the envelope; emails.get returns it", async () => {
    const [to, cc, bcc] = [recipient("sdk-to"), recipient("sdk-cc"), recipient("sdk-bcc")];
    const sent = await resend.emails.send({
      from: "Acme <noreply@mailroom.test>",
      to,
      cc,
      bcc,
      replyTo: ["Support <support@mailroom.test>"],
      headers: { "X-Entity-Ref-ID": "order-123" },
      tags: [{ name: "category", value: "receipt" }],
      attachments: [{ filename: "receipt – März.pdf", content: Buffer.from("%PDF-1.4 receipt\r\n.\r\n\u0000binary") }],
      subject: "Your receipt",
      text: "Thanks",
    });
    expect(sent.error).toBeNull();
    const id = sent.data!.id;
    await waitForStatus(id, "sent");
    const got = await resend.emails.get(id);
    expect(got.error).toBeNull();
    expect(got.data).toMatchObject({ id, to: [to], cc: [cc], bcc: [bcc], reply_to: ["Support <support@mailroom.test>"], tags: [{ name: "category", value: "receipt" }] });
    const [mail, ...more] = received(bcc);
    expect(more).toHaveLength(0);
    expect([...mail!.envelope.to].sort()).toEqual([to, cc, bcc].sort());
    const head = mail!.raw.slice(0, mail!.raw.indexOf("\r\n\r\n"));
    expect(head).not.toContain(bcc);
    expect(head).toMatch(/^X-Entity-Ref-ID: order-123$/m);
    expect(head).toMatch(/^Reply-To: Support <support@mailroom\.test>$/m);
    expect(mail!.attachments).toMatchObject([{ filename: "receipt – März.pdf", contentType: "application/pdf", size: Buffer.from("%PDF-1.4 receipt\r\n.\r\n\u0000binary").length }]);
  });

  it("emails.send with 3 MiB of attachments (kept in R2 under wrangler dev): they arrive byte-identical", async () => {
    const to = recipient("sdk-large");
    const file = randomBytes(3 * 1024 * 1024);
    const sent = await resend.emails.send({ from: "noreply@mailroom.test", to, subject: "Scans", text: "Attached.", attachments: [{ filename: "scan.tiff", content: file, contentType: "image/tiff" }] });
    expect(sent.error).toBeNull();
    await waitForStatus(sent.data!.id, "sent");
    const [mail] = received(to);
    expect(mail!.attachments).toEqual([
      { filename: "scan.tiff", contentType: "image/tiff", disposition: "attachment", contentId: null, size: file.length, sha256: createHash("sha256").update(file).digest("hex") },
    ]);
  });

  it("emails.send with a template: the rendered mail arrives", async () => {
    const to = recipient("sdk-template");
    const sent = await resend.emails.send({
      from: "noreply@mailroom.test",
      to,
      template: { id: "password-reset", variables: { user_name: "Ada", product_name: "Acme", button_url: "https://acme.example/r/1", button_label: "Reset", expires_in_minutes: 30 } },
    });
    expect(sent.error).toBeNull();
    await waitForStatus(sent.data!.id, "sent");
    const [mail] = received(to);
    expect(mail!.subject).toBe("Reset your Acme password");
    expect(mail!.text).toContain("Reset (https://acme.example/r/1)");
  });

  it("batch.send: every message sent, ids in order; one bad message refuses the batch and nothing is sent", async () => {
    const to = [recipient("sdk-batch0"), recipient("sdk-batch1")];
    const batch = await resend.batch.send([
      { from: "noreply@mailroom.test", to: to[0]!, subject: "First", text: "1" },
      { from: "noreply@mailroom.test", to: to[1]!, template: { id: "welcome", variables: { user_name: "Ada", email: "ada@example.com", product_name: "Acme", button_url: "https://acme.example", button_label: "Go" } } },
    ]);
    expect(batch.error).toBeNull();
    expect(batch.data!.data).toHaveLength(2);
    for (const { id } of batch.data!.data) await waitForStatus(id, "sent");
    expect(received(to[0]!)[0]!.subject).toBe("First");
    expect(received(to[1]!)[0]!.subject).toBe("Welcome to Acme, Ada!");

    const bad = recipient("sdk-batch-bad");
    const refused = await resend.batch.send([
      { from: "noreply@mailroom.test", to: bad, subject: "Fine", text: "x" },
      { from: "noreply@mailroom.test", to: "not an address", subject: "Bad", text: "x" },
    ]);
    expect(refused.data).toBeNull();
    expect(refused.error).toMatchObject({ name: "validation_error" });
    expect(refused.error!.message).toContain("1.to.0");
    expect(received(bad)).toHaveLength(0);
  });

  it("emails.send with the same key and another body gets a validation error, and nothing is sent", async () => {
    const to = recipient("sdk-idem-diff");
    const idempotencyKey = randomUUID();
    await resend.emails.send({ from: "noreply@mailroom.test", to, subject: "One", text: "x" }, { idempotencyKey });
    const other = await resend.emails.send({ from: "noreply@mailroom.test", to, subject: "Two", text: "x" }, { idempotencyKey });
    expect(other.data).toBeNull();
    expect(other.error).toMatchObject({ error: { code: "validation_error" } });
  });

  it("an invalid address comes back as an SDK error whose message names the field", async () => {
    const sent = await resend.emails.send({ from: "noreply@mailroom.test", to: ["ok@example.com", "not an address"], subject: "x", text: "x" });
    expect(sent.data).toBeNull();
    expect(sent.error).toMatchObject({ name: "validation_error", statusCode: 422, message: expect.stringContaining("to.1: ") });
  });

  it("schedules, moves with emails.update, stops with emails.cancel: never sent", async () => {
    const to = recipient("sdk-scheduled");
    const inAnHour = new Date(Date.now() + 3600_000).toISOString();
    const sent = await resend.emails.send({ from: "noreply@mailroom.test", to, subject: "Later", text: "x", scheduledAt: inAnHour });
    expect(sent.error).toBeNull();
    const id = sent.data!.id;
    expect(await statusOf(id)).toMatchObject({ status: "scheduled", scheduled_at: inAnHour });

    const inTwoHours = new Date(Date.now() + 7200_000).toISOString();
    const updated = await resend.emails.update({ id, scheduledAt: inTwoHours });
    expect(updated).toMatchObject({ data: { object: "email", id }, error: null });
    expect(await statusOf(id)).toMatchObject({ status: "scheduled", scheduled_at: inTwoHours });

    const canceled = await resend.emails.cancel(id);
    expect(canceled).toMatchObject({ data: { object: "email", id }, error: null });
    expect((await statusOf(id)).status).toBe("canceled");

    const again = await resend.emails.cancel(id);
    expect(again.data).toBeNull();
    expect(again.error).toMatchObject({ error: { code: "conflict" } });
    expect(received(to)).toEqual([]);
  });

  it("delivers a send scheduled 2 s ahead once its time has come", async () => {
    const to = recipient("sdk-soon");
    const at = new Date(Date.now() + 2000);
    const { data } = await resend.emails.send({ from: "noreply@mailroom.test", to, subject: "Soon", text: "x", scheduledAt: at.toISOString() });
    expect((await statusOf(data!.id)).status).toBe("scheduled");
    await waitForStatus(data!.id, "sent");
    const [mail] = received(to);
    expect(Date.parse(mail!.receivedAt)).toBeGreaterThanOrEqual(at.getTime());
  });

  it("refuses a send scheduled 30 days and a minute ahead", async () => {
    const tooFar = new Date(Date.now() + 30 * 86_400_000 + 60_000).toISOString();
    const { data, error } = await resend.emails.send({ from: "noreply@mailroom.test", to: recipient("sdk-far"), subject: "Far", text: "x", scheduledAt: tooFar });
    expect(data).toBeNull();
    expect(error).toMatchObject({ error: { code: "validation_error", issues: [{ path: "scheduled_at", message: "must be at most 30 days ahead" }] } });
  });

  it("emails.list pages the key's emails newest first", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { data } = await resend.emails.send({ from: "noreply@mailroom.test", to: recipient(`sdk-list${i}`), subject: `List ${i}`, text: "x", scheduledAt: new Date(Date.now() + 3600_000).toISOString() });
      ids.push(data!.id);
    }
    const first = await resend.emails.list({ limit: 2 });
    expect(first.error).toBeNull();
    expect(first.data).toMatchObject({ object: "list", has_more: true, data: [{ id: ids[2], subject: "List 2", last_event: "scheduled" }, { id: ids[1] }] });
    const next = await resend.emails.list({ limit: 2, after: ids[1]! });
    expect(next.data!.data[0]!.id).toBe(ids[0]);
    const back = await resend.emails.list({ limit: 1, before: ids[1]! });
    expect(back.data!.data.map((e) => e.id)).toEqual([ids[2]]);
    for (const id of ids) await resend.emails.cancel(id);
  });

  it("webhooks.create, an event arrives, webhooks.verify accepts it; get, list, update, events, attempts, replay, rotate, remove", async () => {
    const endpoint = `http://127.0.0.1:${receiver.port}/webhooks/sdk`;
    const created = await resend.webhooks.create({ endpoint, events: ["email.sent"] });
    expect(created.error).toBeNull();
    const { id, signing_secret } = created.data!;
    expect(created.data).toMatchObject({ object: "webhook", signing_secret: expect.stringMatching(/^whsec_/) });

    const to = recipient("sdk-hook");
    const sent = await resend.emails.send({ from: "noreply@mailroom.test", to, subject: "Hooked", text: "x" });
    const deadline = Date.now() + 20_000;
    while (receiver.received("sdk").length === 0) {
      if (Date.now() > deadline) throw new Error(`no webhook delivery:\n${wrangler!.output()}`);
      await delay(50);
    }
    const [delivery] = receiver.received("sdk");
    const header = (name: string) => String(delivery!.headers[name]);
    const event = resend.webhooks.verify({ payload: delivery!.body, headers: { id: header("svix-id"), timestamp: header("svix-timestamp"), signature: header("svix-signature") }, webhookSecret: signing_secret });
    expect(event).toMatchObject({ type: "email.sent", data: { email_id: sent.data!.id, to: [to], subject: "Hooked" } });

    expect((await resend.webhooks.get(id)).data).toMatchObject({ object: "webhook", id, status: "enabled", endpoint, events: ["email.sent"], signing_secret });
    expect((await resend.webhooks.list()).data!.data.map((w) => w.id)).toContain(id);
    const eventId = header("webhook-id");
    for (let listed = await resend.webhooks.events.list({ webhookId: id }); ; listed = await resend.webhooks.events.list({ webhookId: id })) {
      expect(listed.data!.data).toMatchObject([{ id: eventId, type: "email.sent" }]);
      if (listed.data!.data[0]!.status === "success") break;
      if (Date.now() > deadline) throw new Error("the event never became a success");
      await delay(50);
    }
    expect((await resend.webhooks.events.get({ webhookId: id, eventId })).data).toMatchObject({ object: "webhook_event", id: eventId, status: "success", payload: event });
    expect((await resend.webhooks.events.attempts.list({ webhookId: id, eventId })).data!.data).toMatchObject([{ http_status_code: 200, response: "ok" }]);
    expect((await resend.webhooks.events.replay({ webhookId: id, eventId })).data).toEqual({ object: "webhook_event", id: eventId });
    while (receiver.received("sdk").length < 2) {
      if (Date.now() > deadline) throw new Error("the replay never arrived");
      await delay(50);
    }
    expect(receiver.received("sdk")[1]!.headers["webhook-id"]).toBe(eventId);

    const rotated = await resend.webhooks.rotateSigningSecret(id);
    expect(rotated.data).toMatchObject({ object: "webhook", id, signing_secret: expect.stringMatching(/^whsec_/) });
    expect((await resend.webhooks.update(id, { status: "disabled" })).data).toEqual({ object: "webhook", id });
    expect((await resend.webhooks.get(id)).data).toMatchObject({ status: "disabled", signing_secret: rotated.data!.signing_secret });
    expect((await resend.webhooks.remove(id)).data).toEqual({ object: "webhook", id, deleted: true });
    expect((await resend.webhooks.get(id)).error).toMatchObject({ statusCode: 404 });
  });
});
