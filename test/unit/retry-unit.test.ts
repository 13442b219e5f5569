import { describe, expect, it } from "vitest";
import { backoffSeconds, classifyAttempt } from "../../src/core/retry";
import type { SmtpFailure } from "../../src/delivery/smtp";

const policy = { baseDelaySeconds: 30, maxDelaySeconds: 3600 };
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

  it("treats an accepted message as sent", () => {
    expect(classifyAttempt({ ok: true, value: { code: 250, reply: "queued as 1", rejected: [] } }, 1, policy)).toEqual({ kind: "sent", code: 250, detail: "queued as 1" });
    const partial = { code: 250, reply: "ok", rejected: [{ recipient: "gone@example.com", code: 550, reply: "no such user" }] };
    expect(classifyAttempt({ ok: true, value: partial }, 1, policy)).toEqual({ kind: "sent", code: 250, detail: "ok; refused permanently: gone@example.com (550 no such user)" });
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
    const outcome = classifyAttempt(failure(f), 2, policy);
    expect(outcome.kind).toBe(kind);
    if (outcome.kind === "retry") expect(outcome.delaySeconds).toBe(60);
  });
});
