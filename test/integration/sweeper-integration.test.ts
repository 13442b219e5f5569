// The sweep (the scheduled handler, run by the Cron Trigger): every pending message whose job was lost
// goes back on the real outbox and is delivered by the real consumer, exactly once; what is not overdue,
// settled, or was swept a moment ago is left alone. Rows here are dated in the year 2000 (or minutes back)
// so that they are overdue by the default grace (5 minutes).
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { OutboxJob } from "../../src/delivery/outbox";
import { getConfig } from "../../src/config";
import { sweep } from "../../src/delivery/sweeper";
import mailroom from "../../src/index";
import { createLogger } from "../../src/log";
import { findOverdue } from "../../src/store/overdue";
import { inboxMessages } from "../helpers/api";
import { claimMessage, insertQueuedMessage, loadMessage, recordRetry } from "../helpers/factories";

const inYear2000 = (minute: number) => new Date(Date.UTC(2000, 0, 1, 0, minute)).toISOString();

async function runSweep(overrides: Partial<Record<keyof Env, unknown>> = {}) {
  const worker: ExportedHandler<Env, OutboxJob> = mailroom;
  const ctx = createExecutionContext();
  await worker.scheduled!(createScheduledController({ cron: "* * * * *", scheduledTime: Date.now() }), { ...env, ...overrides } as Env, ctx);
  await waitOnExecutionContext(ctx);
}

const swept = async (id: string) => (await env.DB.prepare("SELECT swept_at FROM messages WHERE id = ?").bind(id).first<{ swept_at: string | null }>())!.swept_at;

async function waitForSent(id: string) {
  return vi.waitFor(
    async () => {
      const { message, events } = await loadMessage(id);
      if (message.status !== "sent") throw new Error(`still ${message.status}`);
      return { message, events };
    },
    { timeout: 25_000, interval: 20 },
  );
}

describe("sweep", () => {
  // The sweep also finds what other test files left overdue (rows dated months back), which the real
  // consumer then delivers too: hence the longer timeout.
  it("puts messages whose jobs were lost back on the outbox: queued, retrying, and claimed by a killed attempt", { timeout: 30_000 }, async () => {
    const queued = await insertQueuedMessage({ createdAt: inYear2000(0) });
    const retrying = await insertQueuedMessage({ createdAt: inYear2000(0) });
    await claimMessage(env.DB, retrying.id, { now: new Date(inYear2000(1)), leaseMs: 60_000 });
    await recordRetry(env.DB, { id: retrying.id, recipients: [], attempt: 1, at: inYear2000(1), smtpCode: 451, reason: "451 later", nextAttemptAt: inYear2000(5) });
    // Within its retry window (past it, an interrupted attempt fails the message instead of retrying).
    const claimed = await insertQueuedMessage({ createdAt: new Date(Date.now() - 10 * 60_000).toISOString() });
    await claimMessage(env.DB, claimed.id, { now: new Date(Date.now() - 8 * 60_000), leaseMs: 60_000 });

    await runSweep();

    for (const { id, to } of [queued, retrying, claimed]) {
      await waitForSent(id);
      expect(await inboxMessages(to)).toHaveLength(1);
    }
    const { events } = await loadMessage(claimed.id);
    expect(events.map((e) => [e.type, e.attempt])).toEqual([["accepted", null], ["interrupted", 1], ["sent", 2]]);
  });

  it("leaves alone what is not overdue by the grace, what is settled, and what it swept a moment ago", async () => {
    const fresh = await insertQueuedMessage(); // its job is presumably still on its way
    const notYetDue = await insertQueuedMessage({ createdAt: inYear2000(0) });
    await claimMessage(env.DB, notYetDue.id, { now: new Date(inYear2000(1)), leaseMs: 60_000 });
    await recordRetry(env.DB, { id: notYetDue.id, recipients: [], attempt: 1, at: inYear2000(1), reason: "451 later", nextAttemptAt: new Date(Date.now() + 3600_000).toISOString() });
    const liveClaim = await insertQueuedMessage({ createdAt: inYear2000(0) });
    await claimMessage(env.DB, liveClaim.id, { now: new Date(), leaseMs: 600_000 });
    const failed = await insertQueuedMessage({ createdAt: inYear2000(0) });
    await env.DB.prepare("UPDATE messages SET status = 'failed' WHERE id = ?").bind(failed.id).run();
    const justSwept = await insertQueuedMessage({ createdAt: inYear2000(0) });
    const sweptAt = new Date(Date.now() - 60_000).toISOString();
    await env.DB.prepare("UPDATE messages SET swept_at = ? WHERE id = ?").bind(sweptAt, justSwept.id).run();

    const send = vi.spyOn(env.OUTBOX, "sendBatch");
    try {
      await runSweep();
      const requeued = send.mock.calls.flatMap(([jobs]) => [...jobs].map((j) => (j.body as { id: string }).id));
      for (const row of [fresh, notYetDue, liveClaim, failed, justSwept]) expect(requeued).not.toContain(row.id);
    } finally {
      send.mockRestore();
    }
    for (const row of [fresh, notYetDue, liveClaim, failed]) expect(await swept(row.id)).toBeNull();
    expect(await swept(justSwept.id)).toBe(sweptAt);
  });

  it("records the sweep, and sweeps the same row again only after another grace", async () => {
    const { id } = await insertQueuedMessage({ createdAt: inYear2000(0) });
    const send = vi.spyOn(env.OUTBOX, "sendBatch").mockResolvedValue(undefined as never); // the job "gets lost" again
    try {
      await runSweep();
      const first = await swept(id);
      expect(first).not.toBeNull();
      await runSweep();
      expect(await swept(id)).toBe(first);
      await runSweep({ SWEEP_GRACE_SECONDS: "0" });
      expect(await swept(id)).not.toBe(first);
      const ids = send.mock.calls.flatMap(([jobs]) => [...jobs].map((j) => (j.body as { id: string }).id));
      expect(ids.filter((x) => x === id)).toHaveLength(2);
    } finally {
      send.mockRestore();
    }
  });

  it("finds the most overdue rows first, counting a row due exactly at the cutoff as overdue and one swept exactly then as swept", async () => {
    // Dated in 1990, before anything another test leaves behind, so the limit sees only these rows.
    const at = (minute: number) => new Date(Date.UTC(1990, 0, 1, 0, minute)).toISOString();
    const cutoff = at(10);
    const rows = [];
    for (const due of [at(3), at(1), at(10), at(2)]) rows.push(await insertQueuedMessage({ createdAt: due }));
    const [, oldest, dueAtCutoff, sweptAtCutoff] = rows.map((r) => r.id);
    await env.DB.prepare("UPDATE messages SET swept_at = ? WHERE id = ?").bind(cutoff, sweptAtCutoff!).run();
    try {
      expect(await findOverdue(env.DB, { cutoff, limit: 1 })).toEqual([oldest]);
      expect(await findOverdue(env.DB, { cutoff, limit: 3 })).toEqual([oldest, rows[0]!.id, dueAtCutoff]);
    } finally {
      await env.DB.prepare("UPDATE messages SET status = 'canceled' WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(rows.map((r) => r.id))).run();
    }
  });

  it("takes more than one batch of 100 in a sweep", async () => {
    // Dated in 1995 and swept as of 1995, so no row another test leaves behind is touched.
    const rows: string[] = [];
    for (let i = 0; i < 150; i++) rows.push((await insertQueuedMessage({ createdAt: new Date(Date.UTC(1995, 0, 1, 0, 0, i)).toISOString() })).id);
    const batches: string[][] = [];
    const outbox = { sendBatch: async (jobs: Iterable<MessageSendRequest<OutboxJob>>) => void batches.push([...jobs].map((j) => j.body.id)) } as unknown as Queue<OutboxJob>;
    try {
      const requeued = await sweep({ db: env.DB, outbox, config: getConfig(env), log: createLogger({ task: "sweep" }) }, new Date(Date.UTC(1995, 0, 2)));
      expect(requeued).toBe(150);
      expect(batches.map((b) => b.length)).toEqual([100, 50]);
      expect(batches.flat()).toEqual(rows);
    } finally {
      await env.DB.prepare("UPDATE messages SET status = 'canceled' WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(rows)).run();
    }
  });

  it("keeps a row unswept when the queue refuses, so the next sweep tries again", async () => {
    const { id } = await insertQueuedMessage({ createdAt: inYear2000(0) });
    const send = vi.spyOn(env.OUTBOX, "sendBatch").mockRejectedValue(new Error("Queue send failed: service unavailable"));
    try {
      await expect(runSweep()).rejects.toThrow(/service unavailable/);
    } finally {
      send.mockRestore();
    }
    expect(await swept(id)).toBeNull();
    expect((await loadMessage(id)).message.status).toBe("queued");
  });
});
