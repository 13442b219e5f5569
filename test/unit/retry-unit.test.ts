import { describe, expect, it } from "vitest";
import { backoffSeconds, classifyAttempt, formatDuration, retryWindowEndsAt, windowEndedReason, type AttemptContext } from "../../src/core/retry";
import type { SmtpFailure } from "../../src/delivery/smtp";

const policy = { baseDelaySeconds: 30, maxDelaySeconds: 3600, windowSeconds: 72 * 3600 };
const now = new Date("2026-11-30T12:00:00.000Z");
/** Attempt 2, with most of the window still ahead. */
const context: AttemptContext = { attempt: 2, now, windowEndsAt: new Date(now.getTime() + 3600_000), policy };
const failure = (f: Partial<SmtpFailure>): { ok: false; failure: SmtpFailure } => ({
  ok: false,
  failure: { kind: "reply", stage: "rcpt", command: "RCPT TO", message: "RCPT TO answered", ...f },
});

describe("retry classification", () => {
  it("backs off exponentially and caps the delay", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((a) => backoffSeconds(a, policy))).toEqual([30, 60, 120, 240, 480, 960, 1920, 3600]);
    expect(backoffSeconds(1000, policy)).toBe(3600);
    expect(backoffSeconds(3, { baseDelaySeconds: 0, maxDelaySeconds: 10 })).toBe(0);
  });

  it("never asks the queue for more than its 12-hour maximum delay", () => {
    expect(backoffSeconds(20, { baseDelaySeconds: 3600, maxDelaySeconds: 100_000 })).toBe(43_200);
  });

  it("treats an accepted message as sent", () => {
    expect(classifyAttempt({ ok: true, value: { code: 250, reply: "queued as 1", rejected: [] } }, context)).toEqual({ kind: "sent", code: 250, detail: "queued as 1" });
    const partial = { code: 250, reply: "ok", rejected: [{ recipient: "gone@example.com", code: 550, reply: "no such user" }] };
    expect(classifyAttempt({ ok: true, value: partial }, context)).toEqual({ kind: "sent", code: 250, detail: "ok; refused permanently: gone@example.com (550 no such user)" });
  });

  it.each([
    [{ code: 550, stage: "rcpt" as const }, "failed"],
    [{ code: 554, stage: "message" as const }, "failed"],
    [{ code: 552, stage: "data" as const }, "failed"],
    [{ code: 553, stage: "mail" as const }, "failed"],
    [{ code: 451, stage: "rcpt" as const }, "retry"],
    [{ code: 552, stage: "rcpt" as const }, "retry"],
    [{ code: 503, stage: "data" as const }, "retry"],
    [{ code: 530, stage: "mail" as const }, "retry"],
    [{ code: 421, stage: "message" as const }, "retry"],
    [{ code: 535, stage: "auth" as const, kind: "auth" as const }, "retry"],
    [{ code: 554, stage: "greeting" as const }, "retry"],
    [{ code: undefined, stage: "message" as const, kind: "connection" as const }, "retry"],
    [{ code: undefined, stage: "connect" as const, kind: "timeout" as const }, "retry"],
    [{ code: undefined, stage: "starttls" as const, kind: "tls" as const }, "retry"],
  ])("%j → %s", (f, kind) => {
    const outcome = classifyAttempt(failure(f), context);
    expect(outcome.kind).toBe(kind);
    if (outcome.kind === "retry") expect(outcome.delaySeconds).toBe(60);
  });

  it("retries a transient failure until the window ends, the last retry landing at its end", () => {
    const transient = failure({ code: 451, stage: "rcpt", message: "RCPT TO answered 451 try later" });
    const windowEndsAt = new Date(now.getTime() + 45_000);
    expect(classifyAttempt(transient, { ...context, attempt: 3, windowEndsAt })).toEqual({ kind: "retry", delaySeconds: 45, code: 451, reason: "RCPT TO answered 451 try later" });
    expect(classifyAttempt(transient, { ...context, attempt: 1, windowEndsAt })).toMatchObject({ kind: "retry", delaySeconds: 30 });
  });

  it("fails a transient failure once the window has ended, saying so with the last error", () => {
    const transient = failure({ code: 451, stage: "rcpt", message: "RCPT TO answered 451 try later" });
    for (const windowEndsAt of [now, new Date(now.getTime() + 999), new Date(now.getTime() - 1)]) {
      expect(classifyAttempt(transient, { ...context, attempt: 7, windowEndsAt })).toEqual({
        kind: "failed",
        code: 451,
        reason: "retry window of 72 h ended after 7 attempts; last error: RCPT TO answered 451 try later",
      });
    }
  });

  it("lets the window start when the message was due: its scheduled time, else its acceptance", () => {
    const createdAt = "2026-11-30T00:00:00.000Z";
    expect(retryWindowEndsAt({ createdAt, scheduledAt: null }, { windowSeconds: 60 }).toISOString()).toBe("2026-11-30T00:01:00.000Z");
    expect(retryWindowEndsAt({ createdAt, scheduledAt: "2026-12-01T00:00:00.000Z" }, { windowSeconds: 60 }).toISOString()).toBe("2026-12-01T00:01:00.000Z");
  });

  it("names the window and the attempts the way people read them", () => {
    expect([259_200, 3600, 900, 90, 40].map(formatDuration)).toEqual(["72 h", "1 h", "15 min", "90 s", "40 s"]);
    expect(windowEndedReason({ windowSeconds: 40 }, 1, null)).toBe("retry window of 40 s ended after 1 attempt; last error: none recorded");
    expect(windowEndedReason({ windowSeconds: 40 }, 0, null)).toBe("retry window of 40 s ended after 0 attempts; last error: none recorded");
  });
});
