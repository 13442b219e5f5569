// When a message goes: resolveSchedule at the edges of "now" and of the 30-day limit, and the queue delay
// that carries a job to its due time (never early, never more than the queue's 12 hours).
import { describe, expect, it } from "vitest";
import { MAX_SCHEDULE_AHEAD_MS, resolveSchedule } from "../../src/core/schedule";
import { delayUntil } from "../../src/delivery/outbox";

const now = new Date("2026-11-30T12:00:00.000Z");
const plus = (ms: number) => new Date(now.getTime() + ms);

describe("resolveSchedule", () => {
  it("sends now when no time is given, or when the time has come (the very same millisecond included)", () => {
    expect(resolveSchedule(undefined, now)).toEqual({ ok: true, at: null });
    expect(resolveSchedule(plus(-1), now)).toEqual({ ok: true, at: null });
    expect(resolveSchedule(plus(0), now)).toEqual({ ok: true, at: null });
    expect(resolveSchedule(plus(1), now)).toEqual({ ok: true, at: plus(1) });
  });

  it("takes a time exactly 30 days ahead and refuses one a millisecond later", () => {
    expect(resolveSchedule(plus(MAX_SCHEDULE_AHEAD_MS), now)).toEqual({ ok: true, at: plus(MAX_SCHEDULE_AHEAD_MS) });
    expect(resolveSchedule(plus(MAX_SCHEDULE_AHEAD_MS + 1), now)).toEqual({ ok: false, message: "must be at most 30 days ahead" });
  });
});

describe("delayUntil", () => {
  it("rounds up, so a job never arrives before its message is due", () => {
    expect(delayUntil(plus(1_500).toISOString(), now.getTime())).toBe(2);
    expect(delayUntil(plus(1).toISOString(), now.getTime())).toBe(1);
    expect(delayUntil(plus(60_000).toISOString(), now.getTime())).toBe(60);
  });

  it("is 0 for a time that has passed and at most the queue's 12 hours", () => {
    expect(delayUntil(plus(-5_000).toISOString(), now.getTime())).toBe(0);
    expect(delayUntil(plus(13 * 3600_000).toISOString(), now.getTime())).toBe(43_200);
  });
});
