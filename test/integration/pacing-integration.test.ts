// Pacing the relay across invocations: several queue consumer invocations run at once against a real
// SMTP server that counts connections open at once and when each MAIL FROM arrived; SMTP_MAX_CONNECTIONS
// and SMTP_MAX_PER_SECOND hold for all of them together, through the relay's pacer (a Durable Object in
// the same workerd). A throttling answer slows every invocation; a lease whose holder died (taken from the
// pacer and never renewed or released, as a killed invocation leaves it) keeps its place only until it ends.
import { env } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { THROTTLE_PAUSE_MS } from "../../src/core/pacing";
import { deliver, insertQueuedMessage, loadMessage } from "../helpers/factories";
import type { PacingRelayStats } from "../helpers/pacing-relay";

const smtp = inject("smtp");
const control = (path: string) => fetch(`http://127.0.0.1:${smtp.drop.controlPort}/pacing/${path}`).then((r) => r.json<PacingRelayStats>());
const RELAY = { SMTP_PORT: String(smtp.pacing.smtpPort), SMTP_SESSIONS: "3" };
const pacer = () => (env as unknown as { PACER: DurableObjectNamespace<import("../../src/pacing/relay-pacer").RelayPacer> }).PACER.getByName(`127.0.0.1:${smtp.pacing.smtpPort}`);

/** `invocations` consumer invocations at once, each with a batch of `perBatch` new messages. */
async function deliverConcurrently(invocations: number, perBatch: number, settings: Record<string, string>) {
  const batches = await Promise.all(Array.from({ length: invocations }, () => Promise.all(Array.from({ length: perBatch }, () => insertQueuedMessage()))));
  await Promise.all(batches.map((batch) => deliver(batch.map((m) => m.id), { ...RELAY, ...settings })));
  return batches.flat().map((m) => m.id);
}

/** A second, less what a late timer on the way may take off the gap between two slots. */
const WINDOW_MS = 950;

/** The most MAIL FROMs that arrived within any `windowMs`. */
function busiestWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= windowMs) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

describe("pacing the relay across invocations", () => {
  it("without the settings, nothing holds back: invocations together open more connections than the limit below", async () => {
    await control("reset");
    const ids = await deliverConcurrently(3, 6, {});
    const stats = await control("stats");
    expect(stats.mailFrom).toHaveLength(ids.length);
    expect(stats.peak).toBeGreaterThan(2);
  });

  it("keeps several invocations together within SMTP_MAX_CONNECTIONS and SMTP_MAX_PER_SECOND, and delivers every mail", async () => {
    await control("reset");
    const ids = await deliverConcurrently(4, 8, { SMTP_MAX_CONNECTIONS: "2", SMTP_MAX_PER_SECOND: "20" });
    const stats = await control("stats");
    expect(stats.peak).toBe(2);
    expect(stats.mailFrom).toHaveLength(ids.length);
    // 20 a second: never 21 within a second (less 50 ms: a timer may fire late, and so shorten the gap to the next).
    expect(busiestWindow(stats.mailFrom, WINDOW_MS)).toBeLessThanOrEqual(20);
    for (const id of ids) expect((await loadMessage(id)).message.status).toBe("sent");
  });

  it("slows every invocation after a throttling answer: a pause for all, then half the rate", async () => {
    await control("reset");
    await fetch(`http://127.0.0.1:${smtp.drop.controlPort}/pacing/throttle/1`);
    const ids = await deliverConcurrently(3, 8, { SMTP_MAX_PER_SECOND: "20" });
    const stats = await control("stats");
    expect(stats.throttledAt).toHaveLength(1);
    expect(stats.mailFrom).toHaveLength(ids.length - 1); // the throttled one waits for its retry
    const [throttledAt] = stats.throttledAt;
    const after = stats.mailFrom.filter((t) => t > throttledAt!);
    // Slots taken before the answer came may still go (one or two per session: 9 sessions); then nothing
    // for the pause, and 10 a second (half of 20) after it, from all invocations together.
    const duringPause = after.filter((t) => t < throttledAt! + THROTTLE_PAUSE_MS - 20);
    expect(duringPause.length).toBeLessThanOrEqual(18);
    expect(busiestWindow(after.filter((t) => t >= throttledAt! + THROTTLE_PAUSE_MS), WINDOW_MS)).toBeLessThanOrEqual(10);
    const throttled = (await Promise.all(ids.map(loadMessage))).filter((h) => h.message.status === "retrying");
    expect(throttled).toHaveLength(1);
    expect(throttled[0]!.message.lastError).toMatch(/454 Throttling failure/);
  });

  it("gives the place of an invocation that died holding a lease to the next one once the lease ends", async () => {
    await control("reset");
    // A lease taken and then never renewed nor released: what a killed invocation leaves.
    const takenAt = Date.now();
    const dead = await pacer().acquire(1, 2000, 0);
    expect(dead.granted).toBe(true);
    const { id } = await insertQueuedMessage();
    await deliver([id], { ...RELAY, SMTP_MAX_CONNECTIONS: "1", PACING_LEASE_SECONDS: "2" });
    expect((await loadMessage(id)).message.status).toBe("sent");
    const stats = await control("stats");
    expect(stats.connections).toBe(1);
    expect(stats.connectedAt[0]).toBeGreaterThanOrEqual(takenAt + 2000);
  });

  it("tells a waiter whose wait is over no, even behind one still waiting, and serves the other when a place comes free", async () => {
    const held = await pacer().acquire(1, 60_000, 0);
    expect(held.granted).toBe(true);
    let longDone = false;
    const long = pacer().acquire(1, 60_000, 5000).then((grant) => ((longDone = true), grant));
    const short = await pacer().acquire(1, 60_000, 100);
    expect(short).toEqual({ granted: false });
    expect(longDone).toBe(false);
    if (held.granted) await pacer().release(held.leaseId);
    const granted = await long;
    expect(granted.granted).toBe(true);
    if (granted.granted) await pacer().release(granted.leaseId);
  });

  it("does not bring back a lease that was given back, when a late renewal arrives", async () => {
    const grant = await pacer().acquire(1, 60_000, 0);
    expect(grant.granted).toBe(true);
    if (!grant.granted) return;
    expect(await pacer().renew(grant.leaseId, 60_000)).toBe(true);
    await pacer().release(grant.leaseId);
    expect(await pacer().renew(grant.leaseId, 60_000)).toBe(false);
    const next = await pacer().acquire(1, 60_000, 0);
    expect(next.granted).toBe(true);
    if (next.granted) await pacer().release(next.leaseId);
  });

  it("hands a batch back unattempted when no place comes free while the invocation may still start mail, and never fails over for it", async () => {
    await control("reset");
    const held = await pacer().acquire(1, 600_000, 0);
    expect(held.granted).toBe(true);
    try {
      const { id } = await insertQueuedMessage();
      // A short claim leaves the invocation a second or so to start mail in.
      const { result } = await deliver([id], { ...RELAY, SMTP_MAX_CONNECTIONS: "1", DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "100", TRANSPORT: "smtp,cloudflare" });
      expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
      const { message, events } = await loadMessage(id);
      expect(message).toMatchObject({ status: "queued", attempts: 0 });
      expect(events.map((e) => e.type)).toEqual(["accepted"]);
      expect((await control("stats")).connections).toBe(0);
    } finally {
      if (held.granted) await pacer().release(held.leaseId);
    }
  });
});
