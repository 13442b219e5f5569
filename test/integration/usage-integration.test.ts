// What a mail costs, as the log lines report it: D1 rows read and written (index entries included, from
// D1's own meta) and queue operations, per request and per queue batch. The exact row counts pin the
// schema's cost: a new index or an extra write shows up here (and belongs in the README's figures).
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { getConfig } from "../../src/config";
import { createUsage, meterD1, SOURCE_ENV } from "../../src/usage";
import { api, captureLogs, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage } from "../helpers/factories";

type Line = Record<string, unknown>;

async function linesOf(run: () => Promise<unknown>, until: (lines: Line[]) => boolean): Promise<Line[]> {
  const { lines, restore } = captureLogs();
  try {
    await run();
    await vi.waitFor(() => expect(until(lines.map((l) => JSON.parse(l)))).toBe(true));
    return lines.map((l) => JSON.parse(l));
  } finally {
    restore();
  }
}

/**
 * The "queue batch" line of the invocation that made the attempt on `id`: the first after its "delivery
 * attempt" line (the local queue's own consumers run beside the tests and log batches of their own).
 */
function batchLineOf(lines: Line[], id: string): Line | undefined {
  const attempt = lines.findIndex((l) => l.msg === "delivery attempt" && l.email_id === id);
  return lines.slice(attempt + 1).find((l) => l.msg === "queue batch" && l.queue === "mailroom-outbox");
}

describe("what a mail costs, in the log lines", () => {
  it("accepting a single-recipient mail: 7 D1 rows written (message and its four indexes, recipient, event), 1 queue operation", async () => {
    const later = new Date(Date.now() + 3600_000).toISOString(); // scheduled: no consumer takes it during the test
    let id = "";
    const lines = await linesOf(
      async () => ({ id } = await (await api("/v1/emails", { method: "POST", json: { to: uniqueRecipient("cost"), subject: "x", text: "y", scheduled_at: later } })).json<{ id: string }>()),
      (lines) => lines.some((l) => l.msg === "request"),
    );
    expect(id).not.toBe("");
    expect(lines.find((l) => l.msg === "request")).toMatchObject({ method: "POST", status: 202, d1_rows_written: 7, d1_rows_read: expect.any(Number), queue_ops: 1, binding_calls: 2 });
  });

  it("delivering it: 6 D1 rows written (claim and its index entry, recipient, outcome and its index entry, event), 2 queue operations (read, delete)", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("cost") });
    const lines = await linesOf(() => deliver([id]), (lines) => batchLineOf(lines, id) !== undefined);
    expect(lines.find((l) => l.msg === "delivery attempt" && l.email_id === id)).toMatchObject({ outcome: "sent" });
    expect(batchLineOf(lines, id)).toMatchObject({ queue: "mailroom-outbox", messages: 1, d1_rows_written: 6, queue_ops: 2 });
  });

  it("delivering reads the rows of the mails it delivers, not every waiting one: under 100 rows read per mail with 300 others waiting", async () => {
    const waiting: string[] = [];
    for (let i = 0; i < 300; i++) waiting.push((await insertQueuedMessage()).id);
    // Two thirds of them held by other attempts, the rest due: all in the due-time index a claim could walk.
    await env.DB.prepare("UPDATE messages SET status = 'sending', next_attempt_at = '2999-01-01T00:00:00.000Z' WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(waiting.slice(0, 200))).run();
    const mine: string[] = [];
    for (let i = 0; i < 10; i++) mine.push((await insertQueuedMessage({ to: uniqueRecipient("reads") })).id);
    const lines = await linesOf(() => deliver(mine), (lines) => batchLineOf(lines, mine.at(-1)!) !== undefined);
    const batch = batchLineOf(lines, mine.at(-1)!)!;
    expect(batch).toMatchObject({ messages: 10, d1_rows_written: 60 });
    // Claims by the due-time index read every waiting row: 5,606 here before the fix.
    expect(batch.d1_rows_read as number).toBeLessThan(1000);
    await env.DB.prepare("UPDATE messages SET status = 'canceled' WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(waiting)).run();
  });

  it("listing a key's emails reads its page, not other keys' rows", async () => {
    for (let i = 0; i < 200; i++) await insertQueuedMessage({ apiKeyName: "other" });
    const lines = await linesOf(() => api("/v1/emails?limit=5").then((r) => r.text()), (lines) => lines.some((l) => l.msg === "request"));
    const request = lines.find((l) => l.msg === "request")!;
    expect(request).toMatchObject({ status: 200, d1_rows_written: 0 });
    // Six rows by the (key, time, id) index and each one's latest event: far fewer than the 200 others.
    expect(request.d1_rows_read as number).toBeLessThan(40);
  });

  it("a job retried is read, not deleted: 1 queue operation", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("tempfail-cost") }); // the inbox answers 451
    const lines = await linesOf(() => deliver([id]), (lines) => batchLineOf(lines, id) !== undefined);
    expect(lines.find((l) => l.msg === "delivery attempt" && l.email_id === id)).toMatchObject({ outcome: "retry" });
    expect(batchLineOf(lines, id)).toMatchObject({ messages: 1, queue_ops: 1 });
  });

  it("reading status writes nothing and queues nothing", async () => {
    const { id } = await insertQueuedMessage();
    const lines = await linesOf(() => api(`/v1/emails/${id}`).then((r) => r.text()), (lines) => lines.some((l) => l.msg === "request"));
    expect(lines.find((l) => l.msg === "request")).toMatchObject({ status: 200, d1_rows_written: 0, queue_ops: 0, binding_calls: 1 });
    expect(lines.find((l) => l.msg === "request")!.d1_rows_read).toBeGreaterThan(0);
  });
});

describe("a request's env with metered bindings", () => {
  it("shares the settings parsed for the runtime's env: no request parses them again", () => {
    const metered = { ...env, DB: meterD1(env.DB, createUsage()), [SOURCE_ENV]: env } as Env;
    expect(getConfig(metered)).toBe(getConfig(env));
    expect(getConfig({ ...env } as Env)).not.toBe(getConfig(env)); // another env object is parsed on its own
  });
});

describe("meterD1", () => {
  it("answers first() and raw() as D1 does, and counts their rows", async () => {
    const usage = createUsage();
    const db = meterD1(env.DB, usage);
    const sql = "SELECT value AS v, value * 2 AS w FROM json_each('[1,2,3]')";
    expect(await db.prepare(sql).first()).toEqual(await env.DB.prepare(sql).first());
    expect(await db.prepare(sql).first("w")).toEqual(await env.DB.prepare(sql).first("w"));
    expect(await db.prepare(`${sql} WHERE 0`).first()).toBeNull();
    expect(await db.prepare(sql).raw()).toEqual(await env.DB.prepare(sql).raw());
    expect(await db.prepare(sql).raw({ columnNames: true })).toEqual(await env.DB.prepare(sql).raw({ columnNames: true }));
    expect(usage.bindingCalls).toBe(5);
  });

  it("runs a batch of its own statements and adds every statement's rows", async () => {
    const usage = createUsage();
    const db = meterD1(env.DB, usage);
    const { id } = await insertQueuedMessage();
    const [read, written] = await db.batch([
      db.prepare("SELECT id FROM messages WHERE id = ?").bind(id),
      db.prepare("UPDATE messages SET updated_at = ? WHERE id = ?").bind(new Date().toISOString(), id),
    ]);
    expect(read!.results).toEqual([{ id }]);
    expect(written!.meta.changes).toBe(1);
    expect(usage).toMatchObject({ bindingCalls: 1, d1RowsWritten: written!.meta.rows_written });
    expect(usage.d1RowsRead).toBe(read!.meta.rows_read + written!.meta.rows_read);
  });
});
