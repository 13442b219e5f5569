// Retention (run by the scheduled handler): the bodies and attachments of settled messages accepted more than
// RETENTION_DAYS ago are deleted; their status, events, recipients and subject stay, and messages that are
// younger or still waiting to be sent keep their bodies. Attachments in R2 are deleted before the row forgets them.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { OutboxJob } from "../../src/delivery/outbox";
import mailroom from "../../src/index";
import { api, captureLogs } from "../helpers/api";
import { insertQueuedMessage, loadMessage } from "../helpers/factories";

const daysAgo = (days: number) => new Date(Date.now() - days * 86_400_000).toISOString();

async function runScheduled(overrides: Partial<Record<keyof Env, unknown>> = {}) {
  const worker: ExportedHandler<Env, OutboxJob> = mailroom;
  const ctx = createExecutionContext();
  await worker.scheduled!(createScheduledController({ cron: "* * * * *", scheduledTime: Date.now() }), { ...env, ...overrides } as Env, ctx);
  await waitOnExecutionContext(ctx);
}

async function stored(id: string) {
  return env.DB.prepare("SELECT status, subject, text_body, html_body, attachments_json, attachments_key FROM messages WHERE id = ?")
    .bind(id)
    .first<{ status: string; subject: string; text_body: string | null; html_body: string | null; attachments_json: string; attachments_key: string | null }>();
}

async function settle(id: string, status: "sent" | "failed" | "canceled") {
  await env.DB.batch([
    env.DB.prepare(`UPDATE messages SET status = ?, html_body = '<p>hi</p>', attachments_json = '[{"filename":"a.txt","content":"QUJD"}]' WHERE id = ?`).bind(status, id),
    env.DB.prepare("INSERT INTO events (message_id, seq, at, type, attempt, detail) VALUES (?, 2, ?, ?, 1, 'settled by the test')").bind(id, daysAgo(30), status === "canceled" ? "canceled" : status),
  ]);
}

describe("retention", () => {
  it("deletes the bodies of settled messages older than RETENTION_DAYS, and keeps everything else", async () => {
    const old = await Promise.all((["sent", "failed", "canceled"] as const).map(async (status) => ({ status, ...(await insertQueuedMessage({ createdAt: daysAgo(31), subject: `Old ${status}` })) })));
    for (const { id, status } of old) await settle(id, status);
    const young = await insertQueuedMessage({ createdAt: daysAgo(29) });
    await settle(young.id, "sent");
    const waiting = await insertQueuedMessage({ createdAt: daysAgo(31) }); // still queued: it keeps its body until it is sent
    await env.DB.prepare("UPDATE messages SET next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() + 3600_000).toISOString(), waiting.id).run();
    const before = await Promise.all(old.map(({ id }) => loadMessage(id)));

    await runScheduled();

    for (const [i, { id, status }] of old.entries()) {
      expect(await stored(id)).toEqual({ status, subject: `Old ${status}`, text_body: null, html_body: null, attachments_json: "[]", attachments_key: null });
      const after = await loadMessage(id);
      expect(after.events).toEqual(before[i]!.events);
      expect(after.recipients).toEqual(before[i]!.recipients);
      expect((await api(`/v1/emails/${id}`)).status).toBe(200);
    }
    expect(await stored(young.id)).toMatchObject({ text_body: "Hello from the tests", html_body: "<p>hi</p>", attachments_json: '[{"filename":"a.txt","content":"QUJD"}]' });
    expect(await stored(waiting.id)).toMatchObject({ status: "queued", text_body: "Hello from the tests" });
  });

  it("follows RETENTION_DAYS", async () => {
    const { id } = await insertQueuedMessage({ createdAt: daysAgo(3) });
    await settle(id, "sent");
    await runScheduled({ RETENTION_DAYS: "7" });
    expect(await stored(id)).toMatchObject({ text_body: "Hello from the tests" });
    await runScheduled({ RETENTION_DAYS: "2" });
    expect(await stored(id)).toMatchObject({ text_body: null, html_body: null });
  });

  it("deletes the R2 object of old large attachments before it clears the row, and tries again next run when R2 refuses", async () => {
    const { id } = await insertQueuedMessage({ createdAt: daysAgo(31) });
    const key = `attachments/${id}`;
    await env.ATTACHMENTS.put(key, '[{"filename":"big.bin","content":"QUJD"}]');
    await settle(id, "sent");
    await env.DB.prepare("UPDATE messages SET attachments_json = '[]', attachments_key = ? WHERE id = ?").bind(key, id).run();

    const refusing = { delete: async () => Promise.reject(new Error("delete: We encountered an internal error. Please try again. (10001)")) } as unknown as R2Bucket;
    const logs = captureLogs();
    try {
      await expect(runScheduled({ ATTACHMENTS: refusing })).rejects.toThrow(/internal error/);
    } finally {
      logs.restore();
    }
    expect(await env.ATTACHMENTS.head(key)).not.toBeNull();
    expect(await stored(id)).toMatchObject({ text_body: "Hello from the tests", attachments_key: key });

    await runScheduled();
    expect(await env.ATTACHMENTS.head(key)).toBeNull();
    expect(await stored(id)).toMatchObject({ text_body: null, html_body: null, attachments_json: "[]", attachments_key: null });
  });
  it("clears more than ten old messages in one run", async () => {
    const old = await Promise.all(Array.from({ length: 12 }, () => insertQueuedMessage({ createdAt: daysAgo(31) })));
    for (const { id } of old) await settle(id, "sent");
    await runScheduled();
    for (const { id } of old) expect(await stored(id)).toMatchObject({ text_body: null, html_body: null });
  });

  it("clears messages without R2 attachments while R2 refuses deletes", async () => {
    const { id } = await insertQueuedMessage({ createdAt: daysAgo(31) });
    await settle(id, "sent");
    const refusing = { delete: async () => Promise.reject(new Error("delete: We encountered an internal error. Please try again. (10001)")) } as unknown as R2Bucket;
    await runScheduled({ ATTACHMENTS: refusing });
    expect(await stored(id)).toMatchObject({ text_body: null, html_body: null, attachments_json: "[]" });
  });
});
