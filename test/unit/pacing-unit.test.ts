// The rules of pacing, without the Durable Object: leases that end, a send schedule no second of which
// holds more than the rate, what a throttling answer does to it and how it recovers; which answers are
// throttling; and the settings.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config";
import { configProblems } from "../helpers/config";
import { factorAt, FRESH_SCHEDULE, hasRoom, isThrottlingReply, liveLeases, nextExpiry, RECOVERY_STEP_MS, reserveSlots, SLOWEST_FACTOR, throttle, THROTTLE_PAUSE_MS } from "../../src/core/pacing";

const base = { SMTP_HOST: "smtp.relay.example", MAIL_FROM: "Acme <noreply@acme.example>", API_KEYS: `web:${"a".repeat(64)}` };
const PACER = { getByName: () => ({}) };

describe("connection leases", () => {
  const state = { leases: { a: 1000, b: 2000 } };
  it("count only until they end", () => {
    expect(liveLeases(state, 999)).toEqual(state);
    expect(liveLeases(state, 1000)).toEqual({ leases: { b: 2000 } });
    expect(hasRoom(state, 2, 999)).toBe(false);
    expect(hasRoom(state, 2, 1000)).toBe(true);
    expect(hasRoom(state, 3, 0)).toBe(true);
  });

  it("say when the next one ends", () => {
    expect(nextExpiry(state, 0)).toBe(1000);
    expect(nextExpiry(state, 1500)).toBe(2000);
    expect(nextExpiry(state, 2000)).toBeUndefined();
  });
});

describe("the send schedule", () => {
  it("gives each message the next slot, 1/rate apart, none before now", () => {
    const first = reserveSlots(FRESH_SCHEDULE, 10, 3, 5000);
    expect(first.at).toEqual([5000, 5100, 5200]);
    expect(reserveSlots(first.schedule, 10, 1, 5050).at).toEqual([5300]);
    // Idle time is not saved up for a burst later.
    expect(reserveSlots(first.schedule, 10, 2, 9000).at).toEqual([9000, 9100]);
  });

  it("never lets a second hold more than the rate", () => {
    let schedule = FRESH_SCHEDULE;
    const times: number[] = [];
    for (let now = 0; now < 3000; now += 7) {
      const { at, schedule: next } = reserveSlots(schedule, 20, 2, now);
      schedule = next;
      times.push(...at);
    }
    for (let i = 20; i < times.length; i++) expect(times[i]! - times[i - 20]!).toBeGreaterThanOrEqual(1000);
  });

  it("pauses everyone and halves the rate after a throttling answer, then recovers a doubling per step", () => {
    const throttled = throttle(FRESH_SCHEDULE, 10_000);
    expect(throttled).toEqual({ factor: 0.5, throttledAt: 10_000, nextSlotAt: 10_000 + THROTTLE_PAUSE_MS });
    expect(reserveSlots(throttled, 10, 2, 10_000).at).toEqual([11_000, 11_200]);
    expect(factorAt(throttled, 10_000 + RECOVERY_STEP_MS - 1)).toBe(0.5);
    expect(factorAt(throttled, 10_000 + RECOVERY_STEP_MS)).toBe(1);
    // Answers within the pause are the same burst, seen by several sessions: no further halving.
    expect(throttle(throttle(throttled, 10_001), 10_000 + THROTTLE_PAUSE_MS - 1)).toBe(throttled);
    const later = 10_000 + THROTTLE_PAUSE_MS;
    const twice = throttle(throttle(throttled, later), later + THROTTLE_PAUSE_MS);
    expect(twice.factor).toBe(0.125);
    expect(factorAt(twice, later + THROTTLE_PAUSE_MS + 2 * RECOVERY_STEP_MS)).toBe(0.5);
    // Never slower than the slowest.
    let often = FRESH_SCHEDULE;
    for (let i = 1; i <= 10; i++) often = throttle(often, i * THROTTLE_PAUSE_MS);
    expect(often.factor).toBe(SLOWEST_FACTOR);
    // A pause already longer stays.
    expect(throttle({ ...FRESH_SCHEDULE, nextSlotAt: 50_000 }, 10_000).nextSlotAt).toBe(50_000);
  });
});

describe("throttling answers", () => {
  it.each([
    [454, "Throttling failure: Maximum sending rate exceeded.", true],
    [421, "4.7.0 Error: too many messages, rate limit exceeded", true],
    [451, "4.7.1 Rate limited, try again later", true],
    [451, "4.3.0 Temporary lookup failure", false],
    [452, "4.2.2 Mailbox full; rate of delivery exceeded", false],
    [550, "Throttled", false],
    [421, "4.7.0 Too many connections", false],
    [454, "4.7.0 Accurate delivery", false],
  ])("%i %s: %s", (code, text, throttling) => {
    expect(isThrottlingReply(code, text)).toBe(throttling);
  });

  it("needs a code and a text", () => {
    expect(isThrottlingReply(undefined, "throttled")).toBe(false);
    expect(isThrottlingReply(454, undefined)).toBe(false);
  });
});

describe("the pacing settings", () => {
  it("are off without SMTP_MAX_CONNECTIONS and SMTP_MAX_PER_SECOND", () => {
    expect(parseConfig({ ...base, PACER, PACING_LEASE_SECONDS: "10" }).pacing).toBeUndefined();
    expect(parseConfig({ ...base, SMTP_MAX_CONNECTIONS: "", SMTP_MAX_PER_SECOND: "" }).pacing).toBeUndefined();
  });

  it("take either or both, with a lease of 30 s unless set", () => {
    expect(parseConfig({ ...base, PACER, SMTP_MAX_CONNECTIONS: "4" }).pacing).toEqual({ maxConnections: 4, leaseMs: 30_000 });
    expect(parseConfig({ ...base, PACER, SMTP_MAX_PER_SECOND: "0.5", PACING_LEASE_SECONDS: "5" }).pacing).toEqual({ maxPerSecond: 0.5, leaseMs: 5000 });
  });

  it("refuse what cannot work, by name", () => {
    const problems = (env: Record<string, unknown>) => configProblems({ ...base, PACER, ...env });
    expect(problems({ SMTP_MAX_CONNECTIONS: "0" })).toEqual(["SMTP_MAX_CONNECTIONS: must be at least 1"]);
    expect(problems({ SMTP_MAX_CONNECTIONS: "2.5" })).toEqual(["SMTP_MAX_CONNECTIONS: must be a whole number"]);
    expect(problems({ SMTP_MAX_PER_SECOND: "0" })).toEqual(["SMTP_MAX_PER_SECOND: must be more than 0"]);
    expect(problems({ SMTP_MAX_PER_SECOND: "fast" })).toEqual(["SMTP_MAX_PER_SECOND: must be a number"]);
    expect(problems({ SMTP_MAX_PER_SECOND: "1", PACING_LEASE_SECONDS: "1" })).toEqual(["PACING_LEASE_SECONDS: must be at least 2"]);
    expect(problems({ SMTP_MAX_CONNECTIONS: "1", PACER: undefined })).toEqual(["SMTP_MAX_CONNECTIONS: pacing needs the Durable Object binding named PACER (see wrangler.toml)"]);
    expect(problems({ SMTP_MAX_PER_SECOND: "1", PACER: undefined })).toEqual(["SMTP_MAX_PER_SECOND: pacing needs the Durable Object binding named PACER (see wrangler.toml)"]);
  });

  it("pace only a relay: without smtp in TRANSPORT there is nothing to pace", () => {
    const config = parseConfig({ MAIL_FROM: base.MAIL_FROM, API_KEYS: base.API_KEYS, TRANSPORT: "cloudflare", EMAIL: { send: () => {} }, SMTP_MAX_PER_SECOND: "5" });
    expect(config.pacing).toBeUndefined();
  });
});
