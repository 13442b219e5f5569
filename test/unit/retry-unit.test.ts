import { describe, expect, it } from "vitest";
import { backoffSeconds, formatDuration, isAccepted, isPermanent, retryWindowEndsAt, windowEndedReason } from "../../src/core/retry";
import type { SmtpFailure } from "../../src/transport/transport";

const policy = { baseDelaySeconds: 30, maxDelaySeconds: 3600 };
const failure = (f: Partial<SmtpFailure>): SmtpFailure => ({ kind: "reply", stage: "rcpt", command: "RCPT TO", message: "RCPT TO answered", ...f });

describe("retry policy", () => {
  it("backs off exponentially and caps the delay", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffSeconds(a, policy))).toEqual([30, 60, 120, 240, 480, 960, 1920, 3600]);
    expect(backoffSeconds(1000, policy)).toBe(3600);
    expect(backoffSeconds(0, policy)).toBe(30);
    expect(backoffSeconds(3, { baseDelaySeconds: 0, maxDelaySeconds: 10 })).toBe(0);
  });

  it("never asks the queue for more than its 12-hour maximum delay", () => {
    expect(backoffSeconds(20, { baseDelaySeconds: 3600, maxDelaySeconds: 100_000 })).toBe(43_200);
  });

  it.each([
    [{ code: 550, stage: "rcpt" as const }, true],
    [{ code: 500, stage: "rcpt" as const }, true],
    [{ code: 499, stage: "rcpt" as const }, false],
    [{ code: 554, stage: "message" as const }, true],
    [{ code: 552, stage: "data" as const }, true],
    [{ code: 553, stage: "mail" as const }, true],
    [{ code: 451, stage: "rcpt" as const }, false],
    [{ code: 552, stage: "rcpt" as const }, false],
    [{ code: 503, stage: "rcpt" as const }, false],
    [{ code: 530, stage: "rcpt" as const }, false],
    [{ code: 503, stage: "data" as const }, false],
    [{ code: 530, stage: "mail" as const }, false],
    [{ code: 421, stage: "message" as const }, false],
    [{ code: 535, stage: "auth" as const, kind: "auth" as const }, false],
    [{ code: 554, stage: "greeting" as const }, false],
    [{ code: 550, stage: "ehlo" as const }, false],
    [{ code: undefined, stage: "message" as const, kind: "connection" as const }, false],
    [{ code: undefined, stage: "connect" as const, kind: "timeout" as const }, false],
    [{ code: undefined, stage: "starttls" as const, kind: "tls" as const }, false],
    [{ code: 550, stage: "rcpt" as const, kind: "protocol" as const }, false],
  ])("%j is permanent: %s", (f, permanent) => {
    expect(isPermanent(failure(f))).toBe(permanent);
  });

  it("accepts a recipient on a positive completion reply (2xx) only", () => {
    expect([199, 200, 250, 251, 252, 299, 300, 354, 451, 550].map((code) => isAccepted({ code }))).toEqual([false, true, true, true, true, true, false, false, false, false]);
  });

  it("lets the window start when the message was due: its scheduled time, else its acceptance", () => {
    const createdAt = "2026-11-30T00:00:00.000Z";
    expect(retryWindowEndsAt({ createdAt, scheduledAt: null }, { windowSeconds: 60 }).toISOString()).toBe("2026-11-30T00:01:00.000Z");
    expect(retryWindowEndsAt({ createdAt, scheduledAt: "2026-12-01T00:00:00.000Z" }, { windowSeconds: 60 }).toISOString()).toBe("2026-12-01T00:01:00.000Z");
  });

  it("names the window and the attempts the way people read them", () => {
    expect([259_200, 3600, 900, 90, 40].map(formatDuration)).toEqual(["72 h", "1 h", "15 min", "90 s", "40 s"]);
    expect(windowEndedReason({ windowSeconds: 40 }, 1, null)).toBe("retry window of 40 s ended after 1 attempt; last error: none recorded");
    expect(windowEndedReason({ windowSeconds: 259_200 }, 9, "451 later")).toBe("retry window of 72 h ended after 9 attempts; last error: 451 later");
  });
});
