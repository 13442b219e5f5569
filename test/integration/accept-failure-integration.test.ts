// The accept path when its dependencies misbehave: the row is written before the job is enqueued, a
// refused enqueue leaves no row behind, and a 500 never carries the internal error's words.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { API_KEY, captureLogs, messageRowsFor, uniqueRecipient } from "../helpers/api";

async function post(to: string, outbox: Queue) {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request("https://mailroom.test/v1/emails", {
      method: "POST",
      headers: { Authorization: `Bearer ${API_KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ to, subject: "Hello", text: "Hi" }),
    }),
    { ...env, OUTBOX: outbox } as Env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

describe("accepting when the queue misbehaves", () => {
  it("writes the row before it enqueues the job, so a fast consumer always finds it", async () => {
    const seenAtEnqueue: (string | null)[] = [];
    const outbox = {
      ...env.OUTBOX,
      send: async (body: { id: string }, options?: QueueSendOptions) => {
        const row = await env.DB.prepare("SELECT status FROM messages WHERE id = ?").bind(body.id).first<{ status: string }>();
        seenAtEnqueue.push(row?.status ?? null);
        return env.OUTBOX.send(body, options);
      },
    } as Queue;
    const res = await post(uniqueRecipient("order"), outbox);
    expect(res.status).toBe(202);
    expect(seenAtEnqueue).toEqual(["queued"]);
  });

  it("removes the row again and answers 500 when the queue refuses the job", async () => {
    const to = uniqueRecipient("noqueue");
    const outbox = { ...env.OUTBOX, send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const logs = captureLogs();
    try {
      const res = await post(to, outbox);
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({ error: { code: "internal_error", message: "internal error" } });
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
      expect(JSON.parse(text)).toEqual({ error: { code: "internal_error", message: "internal error" } });
    } finally {
      logs.restore();
    }
  });
});
