// The accept path when its dependencies misbehave: the row and the job are written at the same time, a
// refused enqueue or insert leaves no row behind (unless a consumer already claimed it: then 202), and
// a 500 never carries the internal error's words.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import worker from "../../src/index";
import { API_KEY, captureLogs, inboxMessages, messageRowsFor, uniqueRecipient } from "../helpers/api";
import { deliver, loadMessage } from "../helpers/factories";

async function post(to: string, outbox: Queue, db: D1Database = env.DB) {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request("https://mailroom.test/v1/emails", {
      method: "POST",
      headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ to, subject: "Hello", text: "Hi" }),
    }),
    { ...env, OUTBOX: outbox, DB: db } as Env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

describe("accepting when the queue misbehaves", () => {
  it("stores the row and queues the job at the same time, not one after the other", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let sendStarted = false;
    const slowDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        await held; // the insert is slow...
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const watchingOutbox = { ...env.OUTBOX, send: (...args: Parameters<Queue["send"]>) => ((sendStarted = true), env.OUTBOX.send(...args)) } as unknown as Queue;
    const response = post(uniqueRecipient("parallel"), watchingOutbox, slowDb);
    await vi.waitFor(() => expect(sendStarted).toBe(true)); // ...and the job goes out meanwhile
    release();
    expect((await response).status).toBe(202);
  });

  it("answers 500 and stores nothing when D1 refuses the insert, although the queue took the job", async () => {
    const to = uniqueRecipient("noinsert");
    const refusingDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        if (statements.length === 3) throw new Error("D1_ERROR: Network connection lost."); // the insert; the withdraw goes through
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    let res: Response;
    try {
      res = await post(to, env.OUTBOX, refusingDb);
    } finally {
      logs.restore();
    }
    expect(res.status).toBe(500);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("removes the row again and answers 500 when the queue refuses the job", async () => {
    const to = uniqueRecipient("noqueue");
    const outbox = { ...env.OUTBOX, send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const logs = captureLogs();
    try {
      const res = await post(to, outbox);
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({ statusCode: 500, name: "internal_error", message: "internal error", error: { code: "internal_error", message: "internal error" } });
    } finally {
      logs.restore();
    }
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("never puts the internal error's message in a 500 response", async () => {
    const detail = "D1_ERROR: no such column: api_key_digest at offset 42";
    const outbox = { ...env.OUTBOX, send: async () => Promise.reject(new Error(detail)) } as unknown as Queue;
    const logs = captureLogs();
    try {
      const res = await post(uniqueRecipient("leak"), outbox);
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(text).not.toContain("D1_ERROR");
      expect(text).not.toContain("api_key_digest");
      expect(JSON.parse(text)).toEqual({ statusCode: 500, name: "internal_error", message: "internal error", error: { code: "internal_error", message: "internal error" } });
    } finally {
      logs.restore();
    }
  });

  it("answers 202 when the queue took the job after all and a consumer already claimed it, and sends once", async () => {
    const to = uniqueRecipient("lateerror");
    const outbox = {
      ...env.OUTBOX,
      send: async (body: { id: string }) => {
        await deliver([body.id]); // the job went out and was delivered before the queue's answer got lost
        throw new Error("Queue send failed: timed out");
      },
    } as unknown as Queue;
    const logs = captureLogs();
    let res: Response;
    try {
      res = await post(to, outbox);
    } finally {
      logs.restore();
    }
    expect(res.status).toBe(202);
    const { id } = await res.json<{ id: string }>();
    expect((await loadMessage(id)).message.status).toBe("sent");
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("answers 500 when the queue refuses the job and D1 cannot say whether the row was withdrawn", async () => {
    let calls = 0;
    const db = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        if ((calls += 1) === 2) throw new Error("D1_ERROR: Network connection lost."); // withdrawing
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const outbox = { ...env.OUTBOX, send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const logs = captureLogs();
    let res: Response;
    try {
      res = await post(uniqueRecipient("unsure"), outbox, db);
    } finally {
      logs.restore();
    }
    expect(calls).toBe(2);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ statusCode: 500, name: "internal_error", message: "internal error", error: { code: "internal_error", message: "internal error" } });
  });

  it("withdraws a row whose insert committed although D1 reported an error, and answers 500", async () => {
    const to = uniqueRecipient("lostanswer");
    let calls = 0;
    const db = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        const results = await env.DB.batch(statements);
        if ((calls += 1) === 1) throw new Error("D1_ERROR: Network connection lost."); // the insert committed
        return results;
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    let res: Response;
    try {
      res = await post(to, env.OUTBOX, db);
    } finally {
      logs.restore();
    }
    expect(res.status).toBe(500);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("withdraws a scheduled message too when the queue refuses its job, and answers 500", async () => {
    const to = uniqueRecipient("noqueue-scheduled");
    const outbox = { ...env.OUTBOX, send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const logs = captureLogs();
    let res: Response;
    try {
      const ctx = createExecutionContext();
      res = await worker.fetch(
        new Request("https://mailroom.test/v1/emails", {
          method: "POST",
          headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
          body: JSON.stringify({ to, subject: "Later", text: "x", scheduled_at: new Date(Date.now() + 3600_000).toISOString() }),
        }),
        { ...env, OUTBOX: outbox } as Env,
        ctx,
      );
      await waitOnExecutionContext(ctx);
    } finally {
      logs.restore();
    }
    expect(res.status).toBe(500);
    expect(await messageRowsFor(to)).toBe(0);
  });
});
