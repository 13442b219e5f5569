import { describe, expect, it } from "vitest";
import { createLogger, maskAddress } from "../../src/log";

function capture() {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger({ request_id: "r1" }, (line) => lines.push(JSON.parse(line))) };
}

describe("logger", () => {
  it("masks addresses", () => {
    expect(maskAddress("jane@example.com")).toBe("j***@example.com");
    expect(maskAddress("Jane Doe <jane@example.com>")).toBe("j***@example.com");
    expect(maskAddress("no-at-sign")).toBe("***");
  });

  it("writes one JSON object per line with level, msg, time and the base fields", () => {
    const { lines, log } = capture();
    log.child({ email_id: "e1" }).warn("hello", { attempt: 2 });
    expect(lines).toEqual([{ level: "warn", msg: "hello", time: expect.any(String), request_id: "r1", email_id: "e1", attempt: 2 }]);
  });

  it("never writes content, secrets or plain recipients, even inside free text", () => {
    const { lines, log } = capture();
    log.info("attempt", {
      to: ["jane@example.com", "joe@example.org"],
      subject: "Your password reset",
      text: "secret body",
      html: "<p>secret</p>",
      password: "hunter2",
      authorization: "Bearer abc",
      reason: "RCPT TO:<jane@example.com> answered 550 <jane@example.com>: unknown",
      error: new Error("failed for bob@example.net"),
    });
    const line = JSON.stringify(lines[0]);
    for (const secret of ["jane@", "joe@", "bob@", "password reset", "secret", "hunter2", "Bearer abc"]) expect(line).not.toContain(secret);
    expect(lines[0]).toMatchObject({ to: ["j***@example.com", "j***@example.org"], subject: "[redacted]", reason: "RCPT TO:<j***@example.com> answered 550 <j***@example.com>: unknown" });
  });
});
