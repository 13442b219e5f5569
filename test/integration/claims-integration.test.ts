// Claims: one attempt at a time may send a message. Checked on the store (claim, expiry, outcomes that
// apply only to their own claim) and through the real consumer and a real SMTP server (the same job
// delivered twice at once, a claim left behind by a killed attempt).
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { claimMessages, releaseClaims, type Claim } from "../../src/store/attempts";
import { insertMessages } from "../../src/store/messages";
import { captureLogs, inboxMessages, uniqueRecipient } from "../helpers/api";
import { claimMessage, dbWithSqlOf, deliver, insertQueuedMessage, loadMessage, recordFailure, recordRetry, recordSent, runQueue } from "../helpers/factories";

/** Runs the outbox consumer on `ids` with `overrides`, keeping its log lines (parsed). */
async function runCapturingLogs(ids: string[], overrides: Partial<Record<keyof Env, unknown>>) {
  const logs = captureLogs();
  try {
    const { result } = await runQueue("mailroom-outbox", ids, overrides);
    return { result, entries: logs.lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
  } finally {
    logs.restore();
  }
}

const t = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s));
const lease = { leaseMs: 60_000 };
const minutesAgo = (n: number) => new Date(Date.now() - n * 60_000).toISOString();

describe("claims on the store", () => {
  it("claims a due message once: the claim counts the attempt and holds the row until it expires", async () => {
    const { id } = await insertQueuedMessage({ createdAt: t(0).toISOString() });
    const first = await claimMessage(env.DB, id, { now: t(1), ...lease });
    expect(first).toMatchObject({ kind: "claimed", attempt: 1, interrupted: false, message: { id, status: "sending", nextAttemptAt: t(61).toISOString() } });

    expect(await claimMessage(env.DB, id, { now: t(2), ...lease })).toEqual({ kind: "not_due", status: "sending", dueAt: t(61).toISOString() });
    expect((await loadMessage(id)).message.attempts).toBe(1);
  });

  it("applies an outcome only for the claim that made it, then leaves the message alone", async () => {
    const { id, to } = await insertQueuedMessage({ createdAt: t(0).toISOString() });
    await claimMessage(env.DB, id, { now: t(1), ...lease });
    const recipients = [{ address: to, status: "sent" as const, smtpCode: 250, detail: "queued as 1" }];
    expect(await recordSent(env.DB, { id, recipients, attempt: 2, at: t(2).toISOString(), smtpCode: 250, detail: "not my claim" })).toBe(false);
    expect(await recordSent(env.DB, { id, recipients, attempt: 1, at: t(3).toISOString(), smtpCode: 250, detail: "queued as 1" })).toBe(true);
    expect(await recordRetry(env.DB, { id, recipients: [], attempt: 1, at: t(4).toISOString(), reason: "451 later", nextAttemptAt: t(9).toISOString() })).toBe(false);
    expect(await recordFailure(env.DB, { id, recipients: [], attempt: 1, at: t(5).toISOString(), reason: "554 no" })).toBe(false);
    expect(await claimMessage(env.DB, id, { now: t(100), ...lease })).toEqual({ kind: "settled", status: "sent" });

    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", sentAt: t(3).toISOString(), updatedAt: t(3).toISOString(), attempts: 1, lastError: null });
    expect(events.map((e) => [e.type, e.attempt, e.detail])).toEqual([["accepted", null, null], ["sent", 1, "queued as 1"]]);
  });

  it("writes recipients' outcomes only for the claim that made them", async () => {
    const { id, to } = await insertQueuedMessage({ createdAt: t(0).toISOString() });
    await claimMessage(env.DB, id, { now: t(1), ...lease });
    const recipients = [{ address: to, status: "sent" as const, smtpCode: 250, detail: "queued as 1" }];
    expect(await recordSent(env.DB, { id, recipients, attempt: 2, at: t(2).toISOString(), smtpCode: 250, detail: "not my claim" })).toBe(false);
    expect((await loadMessage(id)).recipients).toEqual([{ address: to, status: "pending", smtpCode: null, detail: null }]);

    expect(await recordFailure(env.DB, { id, recipients: [{ address: to, status: "failed", smtpCode: 550, detail: "gone" }], attempt: 1, at: t(3).toISOString(), smtpCode: 550, reason: "gone" })).toBe(true);
    // The claim is released: a late outcome of the same attempt changes no recipient either.
    expect(await recordSent(env.DB, { id, recipients, attempt: 1, at: t(4).toISOString(), smtpCode: 250, detail: "late" })).toBe(false);
    expect((await loadMessage(id)).recipients).toEqual([{ address: to, status: "failed", smtpCode: 550, detail: "gone" }]);
  });

  it("a failed message stays failed", async () => {
    const { id } = await insertQueuedMessage({ createdAt: t(0).toISOString() });
    await claimMessage(env.DB, id, { now: t(1), ...lease });
    expect(await recordFailure(env.DB, { id, recipients: [], attempt: 1, at: t(2).toISOString(), smtpCode: 550, reason: "RCPT TO answered 550 user unknown" })).toBe(true);
    expect(await recordSent(env.DB, { id, recipients: [], attempt: 1, at: t(3).toISOString(), smtpCode: 250, detail: "late" })).toBe(false);
    expect(await claimMessage(env.DB, id, { now: t(100), ...lease })).toEqual({ kind: "settled", status: "failed" });
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "failed", lastError: "RCPT TO answered 550 user unknown", sentAt: null });
    expect(events.map((e) => [e.type, e.attempt, e.smtpCode])).toEqual([["accepted", null, null], ["failed", 1, 550]]);
  });

  it("does not claim a retrying message before its next attempt is due", async () => {
    const { id } = await insertQueuedMessage({ createdAt: t(0).toISOString() });
    await claimMessage(env.DB, id, { now: t(1), ...lease });
    await recordRetry(env.DB, { id, recipients: [], attempt: 1, at: t(2).toISOString(), smtpCode: 451, reason: "451 later", nextAttemptAt: t(30).toISOString() });
    expect(await claimMessage(env.DB, id, { now: t(29), ...lease })).toEqual({ kind: "not_due", status: "retrying", dueAt: t(30).toISOString() });
    expect(await claimMessage(env.DB, id, { now: t(30), ...lease })).toMatchObject({ kind: "claimed", attempt: 2, interrupted: false });
  });

  it("lets a new attempt take over an expired claim, recording the interruption as a possible duplicate", async () => {
    const { id } = await insertQueuedMessage({ createdAt: t(0).toISOString() });
    await claimMessage(env.DB, id, { now: t(1), ...lease });
    const second = await claimMessage(env.DB, id, { now: t(61), ...lease });
    expect(second).toMatchObject({ kind: "claimed", attempt: 2, interrupted: true });
    // The first attempt comes back late: its outcome no longer applies.
    expect(await recordSent(env.DB, { id, recipients: [], attempt: 1, at: t(62).toISOString(), smtpCode: 250, detail: "late" })).toBe(false);

    const { events } = await loadMessage(id);
    expect(events).toEqual([
      { seq: 1, at: t(0).toISOString(), type: "accepted", attempt: null, smtpCode: null, detail: null, recipient: null, enhancedCode: null, transport: null },
      { seq: 2, at: t(61).toISOString(), type: "interrupted", attempt: 1, smtpCode: null, detail: expect.stringContaining("possible duplicate"), recipient: null, enhancedCode: null, transport: null },
    ]);
  });

  it("releases a claim whose attempt never started exactly as it found the row, interruption included", async () => {
    const queued = await insertQueuedMessage();
    const abandoned = await insertQueuedMessage({ createdAt: minutesAgo(20) });
    await claimMessage(env.DB, abandoned.id, { now: new Date(Date.now() - 10 * 60_000), ...lease }); // its attempt died; the claim expired
    const claims = await claimMessages(env.DB, [queued.id, abandoned.id], { now: new Date(), ...lease });
    const taken = [queued.id, abandoned.id].map((id) => claims.get(id)!) as Extract<Claim, { kind: "claimed" }>[];
    expect(taken.map((c) => [c.kind, c.attempt, c.interrupted])).toEqual([
      ["claimed", 1, false],
      ["claimed", 2, true],
    ]);
    await releaseClaims(env.DB, taken);
    expect((await loadMessage(queued.id)).message).toMatchObject({ status: "queued", attempts: 0 });
    const released = await loadMessage(abandoned.id);
    expect(released.message).toMatchObject({ status: "sending", attempts: 1 });
    expect(released.events.map((e) => e.type)).toEqual(["accepted"]);
    // The next claim sees what the released one saw: an interrupted attempt 1.
    expect(await claimMessage(env.DB, abandoned.id, { now: new Date(), ...lease })).toMatchObject({ kind: "claimed", attempt: 2, interrupted: true });
    expect((await loadMessage(abandoned.id)).events.map((e) => [e.type, e.attempt])).toEqual([
      ["accepted", null],
      ["interrupted", 1],
    ]);
  });

  it("releases nothing once the claim is no longer the attempt's own", async () => {
    const { id } = await insertQueuedMessage({ createdAt: minutesAgo(20) });
    const first = (await claimMessages(env.DB, [id], { now: new Date(Date.now() - 10 * 60_000), ...lease })).get(id) as Extract<Claim, { kind: "claimed" }>;
    await claimMessage(env.DB, id, { now: new Date(), ...lease }); // another attempt took the expired claim
    await releaseClaims(env.DB, [first]);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sending", attempts: 2 });
    expect(events.map((e) => e.type)).toEqual(["accepted", "interrupted"]);
  });

  it("keeps the interruption a claim recorded when that claim, no longer its attempt's own, is released", async () => {
    const { id } = await insertQueuedMessage({ createdAt: minutesAgo(30) });
    await claimMessage(env.DB, id, { now: new Date(Date.now() - 20 * 60_000), ...lease }); // attempt 1 died
    // Attempt 2 took the expired claim (recording attempt 1's interruption) and died too; attempt 3 took over.
    const second = (await claimMessages(env.DB, [id], { now: new Date(Date.now() - 10 * 60_000), ...lease })).get(id) as Extract<Claim, { kind: "claimed" }>;
    expect(second).toMatchObject({ kind: "claimed", attempt: 2, interrupted: true });
    await claimMessage(env.DB, id, { now: new Date(), ...lease });
    await releaseClaims(env.DB, [second]);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sending", attempts: 3 });
    expect(events.map((e) => [e.type, e.attempt])).toEqual([
      ["accepted", null],
      ["interrupted", 1],
      ["interrupted", 2],
    ]);
  });

  it("knows no message for an unknown id", async () => {
    expect(await claimMessage(env.DB, crypto.randomUUID(), { now: t(1), ...lease })).toEqual({ kind: "unknown" });
  });
});

describe("claims by bytes", () => {
  it("claims due messages in order until their sizes reach the budget; the rest are over budget and untouched", async () => {
    const big = "x".repeat(800_000);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await insertQueuedMessage({ text: big })).id);
    // The third is an expired claim: past the budget it must not be marked interrupted either.
    await env.DB.prepare("UPDATE messages SET status = 'sending', attempts = 1, next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() - 1000).toISOString(), ids[3]).run();
    const claims = await claimMessages(env.DB, ids, { now: new Date(), leaseMs: 60_000, budgetBytes: 1_500_000 });
    // 0 (nothing before it), 800 KB before the second (< 1.5 MB), 1.6 MB before the third: over.
    expect(ids.map((id) => claims.get(id)!.kind)).toEqual(["claimed", "claimed", "over_budget", "over_budget"]);
    const rows = await env.DB.prepare("SELECT id, status, attempts, size_bytes FROM messages WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(ids)).all<{ id: string; status: string; attempts: number; size_bytes: number }>();
    const byId = new Map(rows.results.map((r) => [r.id, r]));
    expect(ids.map((id) => [byId.get(id)!.status, byId.get(id)!.attempts])).toEqual([["sending", 1], ["sending", 1], ["queued", 0], ["sending", 1]]);
    expect(byId.get(ids[0]!)!.size_bytes).toBeGreaterThan(800_000);
    expect((await loadMessage(ids[3]!)).events.map((e) => e.type)).toEqual(["accepted"]);
    // A later claim takes the one left out; the first message alone is always claimed, however large.
    expect((await claimMessages(env.DB, [ids[2]!, ids[3]!], { now: new Date(), leaseMs: 60_000, budgetBytes: 1 })).get(ids[2]!)!.kind).toBe("claimed");
  });

  it("delivers a batch of large messages in chunks bounded by bytes, each message once", async () => {
    const big = "y".repeat(700_000);
    const batch = [];
    for (let i = 0; i < 6; i++) batch.push(await insertQueuedMessage({ text: big }));
    const claimedPerChunk: number[] = [];
    const { db: countingDb } = dbWithSqlOf((statements, results, sqlOf) => {
      const claim = statements.findIndex((s) => sqlOf(s)?.startsWith("UPDATE messages SET status = 'sending'"));
      if (claim >= 0) claimedPerChunk.push(results[claim]!.results.length);
    });
    const { result } = await runQueue("mailroom-outbox", batch.map((m) => m.id), { DB: countingDb, SMTP_SESSIONS: "1" });
    expect(result.explicitAcks.sort()).toEqual(batch.map((m) => `job-${m.id}`).sort());
    // One alone until the session is up; then 700 KB, 1.4 MB, 2.1 MB: three fit under 2 MB before the third.
    expect(claimedPerChunk).toEqual([1, 3, 2]);
    for (const m of batch) {
      expect((await loadMessage(m.id)).message).toMatchObject({ status: "sent", attempts: 1 });
      expect(await inboxMessages(m.to)).toHaveLength(1);
    }
  });
});

describe("claims in delivery", () => {
  it("sends one mail when the same job is delivered twice at the same time", async () => {
    const { id, to } = await insertQueuedMessage();
    const [a, b] = await Promise.all([deliver([id]), deliver([id])]);
    // Both jobs are acknowledged: one sent the mail, the other found it claimed and put a job back for later.
    expect([...a.result.explicitAcks, ...b.result.explicitAcks]).toEqual([`job-${id}`, `job-${id}`]);
    expect(await inboxMessages(to)).toHaveLength(1);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", attempts: 1 });
    expect(events.map((e) => e.type)).toEqual(["accepted", "sent"]);
  });

  it("sends one mail when the same job comes twice in one batch", async () => {
    const { id, to } = await insertQueuedMessage();
    const { result } = await runQueue("mailroom-outbox", [id, id]);
    expect(result.explicitAcks).toHaveLength(2); // the second job went back on the queue for when the claim ends
    expect(await inboxMessages(to)).toHaveLength(1);
    expect((await loadMessage(id)).message).toMatchObject({ status: "sent", attempts: 1 });
  });

  it("sends one mail when the same job comes twice in one chunk", async () => {
    // The first job is claimed alone (no session is up yet); the two jobs of the same message together, as one chunk.
    const first = await insertQueuedMessage();
    const { id, to } = await insertQueuedMessage();
    const { result } = await runQueue("mailroom-outbox", [first.id, id, id], { SMTP_SESSIONS: "1" });
    expect(result.explicitAcks).toHaveLength(3); // the second job of the message went back on the queue for when the claim ends
    expect(await inboxMessages(to)).toHaveLength(1);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", attempts: 1 });
    expect(events.map((e) => e.type)).toEqual(["accepted", "sent"]);
  });

  it("claims one message until a session is up, then chunks of at most ten", async () => {
    const batch = [];
    for (let i = 0; i < 12; i++) batch.push(await insertQueuedMessage());
    const writes: number[] = [];
    const { db: countingDb } = dbWithSqlOf((statements, _results, sqlOf) => {
      // An outcome's batch: each message's recipients update, then the message's, then its history.
      const outcomes = statements.filter((s) => sqlOf(s)?.startsWith("UPDATE messages SET status = 'sent'")).length;
      if (outcomes > 0) writes.push(outcomes);
    });
    const { result } = await runQueue("mailroom-outbox", batch.map((m) => m.id), { DB: countingDb, SMTP_SESSIONS: "1" });
    expect(result.explicitAcks).toEqual(batch.map((m) => `job-${m.id}`));
    // Each chunk's outcomes are written together once its last message is done.
    expect(writes).toEqual([1, 10, 1]);
    for (const { id } of batch) expect((await loadMessage(id)).message).toMatchObject({ status: "sent", attempts: 1 });
  });

  it("does not send while another attempt holds a live claim", async () => {
    const { id, to } = await insertQueuedMessage();
    await claimMessage(env.DB, id, { now: new Date(), leaseMs: 60_000 });
    const { result } = await deliver([id]);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect(result.retryMessages).toEqual([]);
    expect(await inboxMessages(to)).toHaveLength(0);
    expect((await loadMessage(id)).message).toMatchObject({ status: "sending", attempts: 1 });
  });

  it("delivers a message whose claim was left by a killed attempt once the claim expires", async () => {
    const { id, to } = await insertQueuedMessage({ createdAt: minutesAgo(2) });
    // An attempt claimed it a minute ago with a 30 s lease and never came back.
    expect(await claimMessage(env.DB, id, { now: new Date(minutesAgo(1)), leaseMs: 30_000 })).toMatchObject({ kind: "claimed" });

    const { result } = await deliver([id]);

    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect(await inboxMessages(to)).toHaveLength(1);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", attempts: 2 });
    expect(events.map((e) => [e.type, e.attempt])).toEqual([["accepted", null], ["interrupted", 1], ["sent", 2]]);
    expect(events[1]!.detail).toMatch(/possible duplicate/);
  });

  it("keeps the same Message-ID on the attempt after an interruption, so receivers can drop a duplicate", async () => {
    const { id, to } = await insertQueuedMessage({ createdAt: minutesAgo(2) });
    await claimMessage(env.DB, id, { now: new Date(minutesAgo(1)), leaseMs: 30_000 });
    await runQueue("mailroom-outbox", [id]);
    const [mail] = await inboxMessages(to);
    const { message } = await loadMessage(id);
    expect(message.attempts).toBe(2);
    expect(mail!.messageId).toBe(message.messageId);
  });

  it("keeps recording a delivered mail while D1 fails, so no later attempt sends it again", async () => {
    const { id, to } = await insertQueuedMessage();
    let calls = 0;
    const flakyDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: (statements: D1PreparedStatement[]) => {
        calls += 1; // 1: the claim; 2 and 3: recording "sent" fails twice
        if (calls === 2 || calls === 3) return Promise.reject(new Error("D1_ERROR: Network connection lost."));
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    try {
      const { result } = await runQueue("mailroom-outbox", [id], { DB: flakyDb });
      expect(result.explicitAcks).toEqual([`job-${id}`]);
    } finally {
      logs.restore();
    }
    expect(calls).toBe(4);
    expect((await loadMessage(id)).message).toMatchObject({ status: "sent", attempts: 1 });
    // Even once the claim would have expired, nothing is left to send.
    await env.DB.prepare("UPDATE messages SET next_attempt_at = ? WHERE id = ?").bind(minutesAgo(1), id).run();
    await deliver([id]);
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("keeps recording a chunk while D1 fails when only some of its mails were delivered", async () => {
    // The first message is claimed alone (no session is up yet); the next two together, as one chunk.
    const first = await insertQueuedMessage();
    const delivered = await insertQueuedMessage();
    const deferred = await insertQueuedMessage({ to: uniqueRecipient("tempfail") }); // 451 from this relay
    let chunkWrites = 0;
    const flakyDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: (statements: D1PreparedStatement[]) => {
        // The chunk's first write fails before it commits: one mail of it went out, so it is written again.
        if (statements.length === 8 && ++chunkWrites === 1) return Promise.reject(new Error("D1_ERROR: Network connection lost."));
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    let result;
    try {
      ({ result } = await runQueue("mailroom-outbox", [first.id, delivered.id, deferred.id], { DB: flakyDb, SMTP_SESSIONS: "1" }));
    } finally {
      logs.restore();
    }
    expect(chunkWrites).toBe(2);
    expect(result.explicitAcks).toEqual([`job-${first.id}`, `job-${delivered.id}`]);
    expect(result.retryMessages).toEqual([{ msgId: `job-${deferred.id}` }]);
    expect((await loadMessage(delivered.id)).message).toMatchObject({ status: "sent", attempts: 1 });
    expect((await loadMessage(deferred.id)).message).toMatchObject({ status: "retrying", attempts: 1 });
    expect(await inboxMessages(delivered.to)).toHaveLength(1);
  });

  it("gives up recording a delivered mail just before its claim ends, and acks the job rather than send it again", { timeout: 15_000 }, async () => {
    const { id, to } = await insertQueuedMessage();
    let calls = 0;
    const failingDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: (statements: D1PreparedStatement[]) => {
        calls += 1; // 1: the claim; every write after it fails
        if (calls > 1) return Promise.reject(new Error("D1_ERROR: Network connection lost."));
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    let outcome: Awaited<ReturnType<typeof runQueue>>;
    try {
      // A 5 s lease: recording may go on until 1 s before the claim ends.
      outcome = await runQueue("mailroom-outbox", [id], { DB: failingDb, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "1000" });
    } finally {
      logs.restore();
    }
    expect(outcome.result.explicitAcks).toEqual([`job-${id}`]);
    expect(outcome.result.retryMessages).toEqual([]);
    expect(outcome.elapsedMs).toBeLessThan(5000);
    expect(calls).toBeGreaterThan(2);
    expect(await inboxMessages(to)).toHaveLength(1);
    expect(logs.lines.map((l) => JSON.parse(l)).find((l) => l.outcome === "sent_unrecorded")).toMatchObject({ level: "error", attempt: 1 });
  });

  it("acks, rather than retries, a job whose claim another attempt took before its retry was recorded", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("tempfail") });
    let calls = 0;
    const overtakenDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        // 2: recording the retry; meanwhile another attempt has claimed the message.
        if ((calls += 1) === 2) await env.DB.prepare("UPDATE messages SET attempts = attempts + 1 WHERE id = ?").bind(id).run();
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const { result, entries } = await runCapturingLogs([id], { DB: overtakenDb });
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect(result.retryMessages).toEqual([]);
    expect(entries.find((l) => l.msg === "delivery attempt")).toMatchObject({ attempt: 1, outcome: "claim_lost" });
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sending", attempts: 2 });
    expect(events.map((e) => e.type)).toEqual(["accepted"]);
  });

  it("does not take another attempt's recorded outcome for its own after a failed write of a delivered mail", async () => {
    const { id } = await insertQueuedMessage();
    let calls = 0;
    const overtakenDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        // 2: recording "sent" fails without committing; meanwhile another attempt has taken the claim and
        // recorded its own outcome, so the write that follows applies to nothing.
        if ((calls += 1) === 2) {
          await env.DB.prepare("UPDATE messages SET attempts = attempts + 1, status = 'retrying' WHERE id = ?").bind(id).run();
          throw new Error("D1_ERROR: Network connection lost.");
        }
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const { result, entries } = await runCapturingLogs([id], { DB: overtakenDb });
    expect(calls).toBe(3);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect(entries.find((l) => l.msg === "delivery attempt")).toMatchObject({ attempt: 1, outcome: "claim_lost" });
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "retrying", attempts: 2 });
    expect(events.map((e) => e.type)).toEqual(["accepted"]);
  });

  it("knows a chunk's outcomes were recorded when the write committed but its answer was lost", async () => {
    // The first message is claimed alone (no session is up yet); the next two together, as one chunk.
    const first = await insertQueuedMessage();
    const { id } = await insertQueuedMessage();
    const deferred = await insertQueuedMessage({ to: uniqueRecipient("tempfail") }); // 451 from this relay
    let chunkWrites = 0;
    const lossyDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        const results = await env.DB.batch(statements);
        // The two outcomes' write commits, but its answer is lost; the consumer writes them again.
        if (statements.length === 8 && ++chunkWrites === 1) throw new Error("D1_ERROR: Network connection lost.");
        return results;
      },
      // recordedBy reads through prepare().bind().all(), which this wrapper passes to the real database.
    } as unknown as D1Database;
    const logs = captureLogs();
    let result;
    try {
      ({ result } = await runQueue("mailroom-outbox", [first.id, id, deferred.id], { DB: lossyDb, SMTP_SESSIONS: "1" }));
    } finally {
      logs.restore();
    }
    const attempts = logs.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === "delivery attempt");
    expect(chunkWrites).toBe(2);
    expect(attempts.map((a) => [a.email_id, a.outcome])).toEqual([
      [first.id, "sent"],
      [id, "sent"],
      [deferred.id, "retry"],
    ]);
    expect(result.explicitAcks).toEqual([`job-${first.id}`, `job-${id}`]);
    expect(result.retryMessages).toEqual([{ msgId: `job-${deferred.id}` }]);
    expect((await loadMessage(id)).events.map((e) => e.type)).toEqual(["accepted", "sent"]);
    expect((await loadMessage(deferred.id)).events.map((e) => e.type)).toEqual(["accepted", "deferred"]);
  });

  it("lets a job that arrives before its row wait for it, then delivers; gives up on a row that never comes", async () => {
    const id = crypto.randomUUID();
    const early = await runQueue("mailroom-outbox", [id]);
    expect(early.result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    expect(early.result.explicitAcks).toEqual([]);

    const to = uniqueRecipient("late-row");
    const from = { address: "noreply@mailroom.test" };
    await insertMessages(env.DB, [{ id, apiKeyName: "tests", createdAt: new Date().toISOString(), messageId: `<${id}@mailroom.test>`, from, to: [{ address: to }], cc: [], bcc: [], replyTo: [], headers: {}, attachments: [], tags: [], recipients: [to], subject: "Late", text: "x" }]);
    await runQueue("mailroom-outbox", [id]);
    expect(await inboxMessages(to)).toHaveLength(1);

    const never = crypto.randomUUID();
    const { result } = await runQueue("mailroom-outbox", [never], {}, (batch) => Object.defineProperty(batch.messages[0]!, "attempts", { value: 3 }));
    expect(result.explicitAcks).toEqual([`job-${never}`]);
  });
});
