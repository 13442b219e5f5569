// Idempotency-Key on POST /v1/emails: the same key and body again answer with the first message (no
// second mail), another body is refused, a request while the first is still being accepted gets 409,
// keys are per API key, and a failed first request leaves the key free for the retry.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { OutboxJob } from "../../src/delivery/outbox";
import worker from "../../src/index";
import { API_KEY, OTHER_KEY, api, captureLogs, inboxMessages, messageRowsFor, uniqueRecipient } from "../helpers/api";
import { completeKey, releaseKey, reserveKey } from "../../src/store/idempotency";

/** A second API key for the tests ("other-key"), next to the default one. */

async function post(json: unknown, { key, apiKey = API_KEY, environment = env }: { key?: string; apiKey?: string; environment?: Env } = {}) {
  const ctx = createExecutionContext();
  const headers: Record<string, string> = { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" };
  if (key !== undefined) headers["Idempotency-Key"] = key;
  const res = await worker.fetch(new Request("https://mailroom.test/v1/emails", { method: "POST", headers, body: JSON.stringify(json) }), environment, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const waitForSent = (id: string) =>
  vi.waitFor(
    async () => {
      const { status } = await (await api(`/v1/emails/${id}`)).json<{ status: string }>();
      if (status !== "sent") throw new Error(`status is ${status}`);
    },
    { timeout: 10_000, interval: 20 },
  );

describe("Idempotency-Key", () => {
  it("answers a repeated request with the first one's id, and sends one mail", async () => {
    const to = uniqueRecipient("idem");
    const key = `order-${crypto.randomUUID()}`;
    const first = await post({ to, subject: "Receipt", text: "Thanks" }, { key });
    expect(first.status).toBe(202);
    const { id } = await first.json<{ id: string }>();
    await waitForSent(id);

    // Same body in another key order and spacing: the same request.
    const again = await post({ text: "Thanks", subject: "Receipt", to }, { key });
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ id, status: "queued" });
    expect(again.headers.get("Location")).toBe(`/v1/emails/${id}`);
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");

    expect(await messageRowsFor(to)).toBe(1);
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("takes the header as a quoted Structured Field string too", async () => {
    const to = uniqueRecipient("idemquoted");
    const key = crypto.randomUUID();
    const first = await (await post({ to, subject: "Hi", text: "x" }, { key })).json<{ id: string }>();
    const quoted = await post({ to, subject: "Hi", text: "x" }, { key: `"${key}"` });
    expect((await quoted.json<{ id: string }>()).id).toBe(first.id);
  });

  it("refuses the same key with a different body (422), changing nothing", async () => {
    const to = uniqueRecipient("idemdiff");
    const key = crypto.randomUUID();
    expect((await post({ to, subject: "One", text: "x" }, { key })).status).toBe(202);
    const res = await post({ to, subject: "Two", text: "x" }, { key });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ error: { code: "validation_error", issues: [{ path: "headers.Idempotency-Key", message: "already used with a different request body" }] } });
    expect(await messageRowsFor(to)).toBe(1);
  });

  it("answers 409 while the first request with the key is still being accepted, then the first one's id", async () => {
    const to = uniqueRecipient("idemrace");
    const key = crypto.randomUUID();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const slowOutbox = {
      ...env.OUTBOX,
      send: async (...args: Parameters<Queue["send"]>) => {
        entered();
        await held; // the first request is stuck between storing the message and queueing its job
        return env.OUTBOX.send(...args);
      },
    } as unknown as Queue;

    const first = post({ to, subject: "Race", text: "x" }, { key, environment: { ...env, OUTBOX: slowOutbox } as Env });
    await inside;
    const concurrent = await post({ to, subject: "Race", text: "x" }, { key });
    expect(concurrent.status).toBe(409);
    expect(await concurrent.json()).toMatchObject({ error: { code: "conflict" } });

    release();
    const { id } = await (await first).json<{ id: string }>();
    const after = await post({ to, subject: "Race", text: "x" }, { key });
    expect((await after.json<{ id: string }>()).id).toBe(id);
    await waitForSent(id);
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("replays a scheduled send as scheduled", async () => {
    const key = crypto.randomUUID();
    const body = { to: uniqueRecipient("idemlater"), subject: "Later", text: "x", scheduled_at: new Date(Date.now() + 3600_000).toISOString() };
    const first = await post(body, { key });
    expect(first.status).toBe(202);
    const { id } = await first.json<{ id: string; status: string }>();
    const again = await post(body, { key });
    expect(again.headers.get("Idempotent-Replayed")).toBe("true");
    expect(await again.json()).toEqual({ id, status: "scheduled" });
  });

  it("keeps keys apart per API key: another key with the same value is a new request", async () => {
    const to = uniqueRecipient("idemkeys");
    const key = crypto.randomUUID();
    const mine = await (await post({ to, subject: "Hi", text: "x" }, { key })).json<{ id: string }>();
    const theirs = await post({ to, subject: "Hi", text: "x" }, { key, apiKey: OTHER_KEY });
    expect(theirs.status).toBe(202);
    expect((await theirs.json<{ id: string }>()).id).not.toBe(mine.id);
    expect(await messageRowsFor(to)).toBe(2);
  });

  it("frees the key when the first request fails, so the client's retry goes through", async () => {
    const to = uniqueRecipient("idemretry");
    const key = crypto.randomUUID();
    const refusing = { ...env.OUTBOX, send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const logs = captureLogs();
    try {
      expect((await post({ to, subject: "Hi", text: "x" }, { key, environment: { ...env, OUTBOX: refusing } as Env })).status).toBe(500);
    } finally {
      logs.restore();
    }
    const retry = await post({ to, subject: "Hi", text: "x" }, { key });
    expect(retry.status).toBe(202);
    expect(retry.headers.get("Idempotent-Replayed")).toBeNull();
    expect(await messageRowsFor(to)).toBe(1);
  });

  it("answers 202 when the message was accepted but its key could not be marked done", async () => {
    const to = uniqueRecipient("idemundone");
    const failing = (sql: string) => ({ bind: () => ({ run: () => Promise.reject(new Error(`D1_ERROR: Network connection lost. (${sql.slice(0, 30)})`)) }) });
    const db = {
      prepare: (sql: string) => (sql.includes("SET state = 'done'") ? failing(sql) : env.DB.prepare(sql)),
      batch: (statements: D1PreparedStatement[]) => env.DB.batch(statements),
    } as unknown as D1Database;
    const logs = captureLogs();
    let res: Response;
    try {
      res = await post({ to, subject: "Hi", text: "x" }, { key: crypto.randomUUID(), environment: { ...env, DB: db } as Env });
    } finally {
      logs.restore();
    }
    expect(res.status).toBe(202);
    await waitForSent((await res.json<{ id: string }>()).id);
    expect(logs.lines.some((l) => l.includes("idempotency key not marked done"))).toBe(true);
  });

  it("replays a key whose first request died after storing its message, and takes over one that stored nothing", async () => {
    const now = new Date();
    const old = new Date(now.getTime() - 120_000);
    const base = { apiKeyName: "tests", fingerprint: "f", ttlMs: 86_400_000, abandonedAfterMs: 60_000 };
    const stored = crypto.randomUUID();
    await env.DB.prepare(
      "INSERT INTO messages (id, status, message_id, from_json, to_json, subject, created_at, updated_at, next_attempt_at) VALUES (?, 'queued', '<x@y>', '{}', '[]', 's', ?, ?, ?)",
    )
      .bind(stored, old.toISOString(), old.toISOString(), old.toISOString())
      .run();
    expect(await reserveKey(env.DB, { ...base, key: "died-after", messageIds: [stored], now: old })).toEqual({ kind: "reserved" });
    expect(await reserveKey(env.DB, { ...base, key: "died-after", messageIds: [crypto.randomUUID()], now })).toEqual({ kind: "replay", messageIds: [stored], status: "queued" });

    expect(await reserveKey(env.DB, { ...base, key: "died-before", messageIds: [crypto.randomUUID()], now: old })).toEqual({ kind: "reserved" });
    expect(await reserveKey(env.DB, { ...base, key: "died-before", messageIds: [crypto.randomUUID()], now })).toEqual({ kind: "reserved" });
    // Within the minute, the same pending key is still in flight.
    expect(await reserveKey(env.DB, { ...base, key: "died-before", messageIds: [crypto.randomUUID()], now: new Date(now.getTime() + 1000) })).toEqual({ kind: "in_flight" });
  });

  it("lets a request that lost its key to a takeover neither free nor complete the new holder's key", async () => {
    const now = new Date();
    const base = { apiKeyName: "tests", key: `taken-over-${crypto.randomUUID()}`, fingerprint: "f", ttlMs: 86_400_000, abandonedAfterMs: 60_000 };
    const slow = crypto.randomUUID();
    const taker = crypto.randomUUID();
    expect(await reserveKey(env.DB, { ...base, messageIds: [slow], now: new Date(now.getTime() - 120_000) })).toEqual({ kind: "reserved" });
    expect(await reserveKey(env.DB, { ...base, messageIds: [taker], now })).toEqual({ kind: "reserved" });

    // The slow first request finally fails (or finishes): it touches only its own reservation.
    await releaseKey(env.DB, { apiKeyName: base.apiKeyName, key: base.key, messageId: slow });
    await completeKey(env.DB, { apiKeyName: base.apiKeyName, key: base.key, messageId: slow });

    expect(await reserveKey(env.DB, { ...base, messageIds: [crypto.randomUUID()], now: new Date(now.getTime() + 1000) })).toEqual({ kind: "in_flight" });
    expect(await env.DB.prepare("SELECT message_id, state FROM idempotency_keys WHERE key = ?").bind(base.key).first()).toEqual({ message_id: taker, state: "pending" });
  });

  it("never stores a second message when a retry takes the key over while the first request is still storing (the takeover race)", async () => {
    const to = uniqueRecipient("race");
    const key = `race-${crypto.randomUUID()}`;
    const mail = { to, subject: "Once", text: "Exactly once" };
    // The first request's second D1 batch (its insert) waits until the retry has taken the key over.
    let batches = 0;
    let letInsertGo!: () => void;
    const insertMayGo = new Promise<void>((resolve) => (letInsertGo = resolve));
    let insertWaiting!: () => void;
    const insertReached = new Promise<void>((resolve) => (insertWaiting = resolve));
    const slowDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        if ((batches += 1) === 2) (insertWaiting(), await insertMayGo);
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const first = post(mail, { key, environment: { ...env, DB: slowDb } });
    await insertReached;
    // Over a minute has passed, as far as the key can tell: the first request looks abandoned.
    await env.DB.prepare("UPDATE idempotency_keys SET created_at = ? WHERE key = ?").bind(new Date(Date.now() - 120_000).toISOString(), key).run();
    const retry = await post(mail, { key });
    expect(retry.status).toBe(202);
    const { id } = await retry.json<{ id: string }>();
    letInsertGo();
    const late = await first;
    expect(late.status).toBe(409); // its insert wrote nothing; retrying it replays the retry's answer
    expect(await messageRowsFor(to)).toBe(1);
    const again = await post(mail, { key });
    expect(await again.json()).toMatchObject({ id });
    await waitForSent(id);
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("keeps a key for 24 hours", async () => {
    const key = crypto.randomUUID();
    const before = Date.now();
    expect((await post({ to: uniqueRecipient("idemttl"), subject: "Hi", text: "x" }, { key })).status).toBe(202);
    const row = await env.DB.prepare("SELECT created_at, expires_at FROM idempotency_keys WHERE key = ?").bind(key).first<{ created_at: string; expires_at: string }>();
    expect(Date.parse(row!.created_at)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(row!.expires_at) - Date.parse(row!.created_at)).toBe(24 * 3600_000);
  });

  it("treats a key older than 24 hours as new, and the sweep forgets such keys", async () => {
    const to = uniqueRecipient("idemexpired");
    const key = crypto.randomUUID();
    const first = await (await post({ to, subject: "Hi", text: "x" }, { key })).json<{ id: string }>();
    const expire = () => env.DB.prepare("UPDATE idempotency_keys SET expires_at = ? WHERE key = ?").bind(new Date(Date.now() - 1000).toISOString(), key).run();
    await expire();
    const again = await (await post({ to, subject: "Hi", text: "x" }, { key })).json<{ id: string }>();
    expect(again.id).not.toBe(first.id);

    await expire();
    const handler: ExportedHandler<Env, OutboxJob> = worker;
    await handler.scheduled!(createScheduledController(), env, createExecutionContext());
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM idempotency_keys WHERE key = ?").bind(key).first("n")).toBe(0);
  });
  // When the queue refuses the job and the withdraw cannot reach D1, the row may still be there (the sweep
  // delivers it): the key is kept, so the client's retry cannot store and send a second message.
  it("does not let a retry send again when the first request could not tell whether its message was withdrawn", async () => {
    const to = uniqueRecipient("idemunsure");
    const key = crypto.randomUUID();
    let batches = 0;
    const db = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        if ((batches += 1) === 3) throw new Error("D1_ERROR: Network connection lost."); // reserve, insert, then the withdraw
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const refusing = { ...env.OUTBOX, send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const logs = captureLogs();
    try {
      expect((await post({ to, subject: "Hi", text: "x" }, { key, environment: { ...env, DB: db, OUTBOX: refusing } as Env })).status).toBe(500);
    } finally {
      logs.restore();
    }
    expect(batches).toBe(3);
    expect(await messageRowsFor(to)).toBe(1); // still stored: the sweep will send it
    // The retry is told to wait (a minute on, the key's message is found and answered with its id).
    expect((await post({ to, subject: "Hi", text: "x" }, { key })).status).toBe(409);
    expect(await messageRowsFor(to)).toBe(1);
  });
});
