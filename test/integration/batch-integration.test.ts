// POST /v1/emails/batch through the real API, queue and SMTP server: up to 100 messages, raw or templated,
// stored and queued together and answered with their ids in order; one bad message (or a key that may not
// send one of them) refuses the whole batch, naming the failing indexes and fields, and nothing is stored,
// queued or sent; a refused queue or D1 write withdraws all of them; an Idempotency-Key answers a repeated
// batch with the same ids.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { api, captureLogs, inboxMessages, messageRowsFor, postCounted, SCOPED_KEY, uniqueRecipient, waitForMail } from "../helpers/api";
import { deliver, loadMessage } from "../helpers/factories";
import { base64, binary } from "../helpers/files";

const welcome = { user_name: "Ada", email: "ada@example.com", product_name: "Acme", button_url: false };
const post = (items: unknown, options: Parameters<typeof postCounted>[1] = {}) => postCounted(JSON.stringify(items), { path: "/v1/emails/batch", ...options });

describe("POST /v1/emails/batch", () => {
  it("accepts raw, templated and scheduled messages together, answers their ids in order, and delivers each", async () => {
    const to = [uniqueRecipient("batch0"), uniqueRecipient("batch1"), uniqueRecipient("batch2")];
    const later = new Date(Date.now() + 3600_000).toISOString();
    const { res, body, enqueued } = await post([
      { to: to[0], subject: "Plain", text: "one" },
      { to: to[1], template: { id: "welcome", variables: welcome } },
      { to: to[2], subject: "Later", text: "three", scheduled_at: later },
    ]);
    expect(res.status).toBe(202);
    expect(body.data).toHaveLength(3);
    expect(enqueued).toBe(3);
    const ids: string[] = body.data.map((d: { id: string }) => d.id);
    const views = await Promise.all(ids.map(async (id) => (await api(`/v1/emails/${id}`)).json<Record<string, any>>()));
    expect(views.map((v) => v.to)).toEqual(to.map((t) => [t]));
    expect(views[2]).toMatchObject({ status: "scheduled", scheduled_at: later });
    expect(views[1]!.template).toEqual({ id: "welcome", locale: null });
    expect((await waitForMail(to[0]!))[0]!.text).toContain("one");
    expect((await waitForMail(to[1]!))[0]!.subject).toBe("Welcome to Acme, Ada!");
  });

  it("refuses the whole batch when one message is bad: 422 naming each failing index and field; nothing stored, queued or sent", async () => {
    const to = [uniqueRecipient("allornothing0"), uniqueRecipient("allornothing1"), uniqueRecipient("allornothing2")];
    const { res, body, enqueued } = await post([
      { to: to[0], subject: "Fine", text: "x" },
      { to: [to[1], "not an address"], subject: "Bad", text: "x" },
      { to: to[2], template: { id: "welcome", variables: { user_name: "Ada" } } },
    ]);
    expect(res.status).toBe(422);
    expect(body.error.message).toBe("the batch is not valid (emails 1, 2); nothing was sent");
    expect(body.error.issues.map((i: { path: string }) => i.path)).toEqual(["1.to.1", "2.template.variables.button_url", "2.template.variables.email", "2.template.variables.product_name"]);
    expect(enqueued).toBe(0);
    for (const recipient of to) expect(await messageRowsFor(recipient)).toBe(0);
  });

  it.each([
    ["an object, not an array", { to: "a@example.com", subject: "x", text: "x" }],
    ["an empty array", []],
    ["101 messages", Array.from({ length: 101 }, () => ({ to: "a@example.com", subject: "x", text: "x" }))],
  ])("refuses %s: 422, nothing queued", async (_name, items) => {
    const { res, body, enqueued } = await post(items);
    expect(res.status).toBe(422);
    expect(body.error.issues).toEqual([{ path: "(body)", message: "must be an array of 1 to 100 emails" }]);
    expect(enqueued).toBe(0);
  });

  it("accepts 100 messages in one request, queued with one sendBatch, and each is delivered", { timeout: 60_000 }, async () => {
    const to = Array.from({ length: 100 }, (_, i) => uniqueRecipient(`hundred${i}`));
    // The jobs are kept here and run through the consumer by the test, so no delivery outlives it.
    const batches: MessageSendRequest[][] = [];
    const holding = { sendBatch: async (messages: Iterable<MessageSendRequest>) => void batches.push([...messages]) } as unknown as Queue;
    const { res, body } = await post(to.map((t) => ({ to: t, subject: "Hundred", text: "x" })), { environment: { OUTBOX: holding } });
    expect(res.status).toBe(202);
    const ids: string[] = body.data.map((d: { id: string }) => d.id);
    expect(ids).toHaveLength(100);
    expect(batches.map((b) => b.map((m) => (m.body as { id: string }).id))).toEqual([ids]);
    await deliver(ids);
    for (const [i, recipient] of to.entries()) expect((await inboxMessages(recipient)).map((m) => m.subject), `message ${i}`).toEqual(["Hundred"]);
  });

  it("refuses batch validation other than all-or-nothing (the Resend SDK's permissive mode)", async () => {
    const to = uniqueRecipient("permissive");
    const { res, body, enqueued } = await post([{ to, subject: "x", text: "x" }], { headers: { "x-batch-validation": "permissive" } });
    expect(res.status).toBe(422);
    expect(body.error.issues[0].path).toBe("headers.x-batch-validation");
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("refuses permissive batch validation whatever the header value's case", async () => {
    const to = uniqueRecipient("permissivecase");
    const { res, enqueued } = await post([{ to, subject: "x", text: "x" }], { headers: { "x-batch-validation": "Permissive" } });
    expect(res.status).toBe(422);
    expect(enqueued).toBe(0);
  });

  it("refuses the whole batch with 403 when the key may not send one message's from", async () => {
    const to = [uniqueRecipient("scopedbatch0"), uniqueRecipient("scopedbatch1")];
    const { res, enqueued } = await post(
      [
        { from: "a@mailroom.test", to: to[0], subject: "x", text: "x" },
        { from: "a@elsewhere.example", to: to[1], subject: "x", text: "x" },
      ],
      { key: SCOPED_KEY },
    );
    expect(res.status).toBe(403);
    expect(enqueued).toBe(0);
    for (const recipient of to) expect(await messageRowsFor(recipient)).toBe(0);
  });

  it("answers a repeated batch under one Idempotency-Key with the same ids, and sends each message once", async () => {
    const to = [uniqueRecipient("idembatch0"), uniqueRecipient("idembatch1")];
    const items = to.map((t) => ({ to: t, subject: "Once", text: "x" }));
    const headers = { "Idempotency-Key": crypto.randomUUID() };
    const first = await post(items, { headers });
    const second = await post(items, { headers });
    expect(second.res.status).toBe(202);
    expect(second.res.headers.get("Idempotent-Replayed")).toBe("true");
    expect(second.body.data).toEqual(first.body.data);
    expect(second.enqueued).toBe(0);
    for (const recipient of to) expect(await messageRowsFor(recipient)).toBe(1);
    for (const recipient of to) expect(await waitForMail(recipient)).toHaveLength(1);
    const other = await post([items[0]], { headers });
    expect(other.res.status).toBe(422);
  });

  it("withdraws every message, and deletes their R2 attachments, when the queue refuses the batch", async () => {
    const to = [uniqueRecipient("batchnoqueue0"), uniqueRecipient("batchnoqueue1")];
    const before = (await env.ATTACHMENTS.list({ prefix: "attachments/" })).objects.length;
    const refusing = { ...env.OUTBOX, sendBatch: async () => Promise.reject(new Error("Queue sendBatch failed")) } as unknown as Queue;
    const logs = captureLogs();
    try {
      const { res } = await post(
        [
          { to: to[0], subject: "x", text: "x", attachments: [{ filename: "big.bin", content: base64(binary(300 * 1024)) }] },
          { to: to[1], subject: "x", text: "x" },
        ],
        { environment: { OUTBOX: refusing } },
      );
      expect(res.status).toBe(500);
    } finally {
      logs.restore();
    }
    for (const recipient of to) expect(await messageRowsFor(recipient)).toBe(0);
    expect((await env.ATTACHMENTS.list({ prefix: "attachments/" })).objects.length).toBe(before);
  });

  it("stores all of a batch in one D1 transaction: a refused write stores none", async () => {
    const to = [uniqueRecipient("batchnodb0"), uniqueRecipient("batchnodb1")];
    const refusingDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        if (statements.length === 6) throw new Error("D1_ERROR: Network connection lost."); // both messages' inserts; the withdraw goes through
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    try {
      const { res } = await post(to.map((t) => ({ to: t, subject: "x", text: "x" })), { environment: { DB: refusingDb } });
      expect(res.status).toBe(500);
    } finally {
      logs.restore();
    }
    for (const recipient of to) expect(await messageRowsFor(recipient)).toBe(0);
  });
  it("queues a scheduled message's job for its time, and the others' at once", async () => {
    const to = [uniqueRecipient("batchdelay0"), uniqueRecipient("batchdelay1")];
    const jobs: MessageSendRequest[] = [];
    const watching = { ...env.OUTBOX, sendBatch: (batch: Iterable<MessageSendRequest>) => (jobs.push(...batch), env.OUTBOX.sendBatch(batch)) } as unknown as Queue;
    const { res } = await post(
      [
        { to: to[0], subject: "Now", text: "x" },
        { to: to[1], subject: "Later", text: "x", scheduled_at: new Date(Date.now() + 3600_000).toISOString() },
      ],
      { environment: { OUTBOX: watching } },
    );
    expect(res.status).toBe(202);
    expect(jobs[0]!.delaySeconds).toBe(0);
    expect(jobs[1]!.delaySeconds).toBeGreaterThan(3500);
  });

  it("deletes the R2 attachments already written when R2 refuses another message's, and stores nothing", async () => {
    const to = [uniqueRecipient("batchput0"), uniqueRecipient("batchput1")];
    const written: string[] = [];
    let puts = 0;
    const flaky = {
      put: (key: string, ...rest: [string]) =>
        (puts += 1) === 1 ? (written.push(key), env.ATTACHMENTS.put(key, ...rest)) : Promise.reject(new Error("put: We encountered an internal error. Please try again. (10001)")),
      delete: (keys: string[]) => env.ATTACHMENTS.delete(keys),
    } as unknown as R2Bucket;
    const logs = captureLogs();
    try {
      const { res, enqueued } = await post(
        to.map((t) => ({ to: t, subject: "x", text: "x", attachments: [{ filename: "big.bin", content: base64(binary(300 * 1024)) }] })),
        { environment: { ATTACHMENTS: flaky } },
      );
      expect(res.status).toBe(500);
      expect(enqueued).toBe(0);
    } finally {
      logs.restore();
    }
    expect(written).toHaveLength(1);
    expect(await env.ATTACHMENTS.head(written[0]!)).toBeNull();
    for (const recipient of to) expect(await messageRowsFor(recipient)).toBe(0);
  });

  it("keeps the whole batch, and answers 202, when the queue's error comes after a consumer claimed one of its messages", async () => {
    const to = [uniqueRecipient("batchlate0"), uniqueRecipient("batchlate1")];
    let ids: string[] = [];
    const outbox = {
      ...env.OUTBOX,
      sendBatch: async (jobs: Iterable<MessageSendRequest<{ id: string }>>) => {
        ids = [...jobs].map((j) => j.body.id);
        await deliver([ids[0]!]); // the batch went out and the first was delivered before the queue's answer got lost
        throw new Error("Queue sendBatch failed: timed out");
      },
    } as unknown as Queue;
    const logs = captureLogs();
    let res: Response;
    let body: Record<string, any>;
    try {
      ({ res, body } = await post(to.map((t) => ({ to: t, subject: "x", text: "x" })), { environment: { OUTBOX: outbox } }));
    } finally {
      logs.restore();
    }
    expect(res.status).toBe(202);
    expect(body.data.map((d: { id: string }) => d.id)).toEqual(ids);
    for (const recipient of to) expect(await messageRowsFor(recipient)).toBe(1); // none withdrawn: the second's job is out too
    await deliver([ids[1]!]); // as its job (or the sweep) would
    expect((await loadMessage(ids[1]!)).message.status).toBe("sent");
    for (const recipient of to) expect(await inboxMessages(recipient)).toHaveLength(1);
  });

  it("answers a batch's takeover of an expired Idempotency-Key with the new request's ids, not the old batch's", async () => {
    const key = crypto.randomUUID();
    const headers = { "Idempotency-Key": key };
    const first = await post([uniqueRecipient("idemtake0"), uniqueRecipient("idemtake1")].map((t) => ({ to: t, subject: "x", text: "x" })), { headers });
    expect(first.res.status).toBe(202);
    await env.DB.prepare("UPDATE idempotency_keys SET expires_at = ? WHERE key = ?").bind(new Date(Date.now() - 1000).toISOString(), key).run();
    const single = JSON.stringify({ to: uniqueRecipient("idemtake2"), subject: "x", text: "x" });
    const second = await postCounted(single, { headers });
    expect(second.res.status).toBe(202);
    const again = await postCounted(single, { headers });
    expect(again.res.headers.get("Idempotent-Replayed")).toBe("true");
    expect(again.body.id).toBe(second.body.id);
  });
});
