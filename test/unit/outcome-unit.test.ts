// Per-recipient outcomes of one attempt, table by table: who is done, who waits, and what the message is.
import { describe, expect, it } from "vitest";
import { classifyAttempt, type AttemptContext } from "../../src/core/outcome";
import type { RecipientReply, SmtpFailure, SmtpTransaction } from "../../src/transport/transport";

const now = new Date("2026-11-30T12:00:00.000Z");
const policy = { baseDelaySeconds: 30, maxDelaySeconds: 3600, windowSeconds: 72 * 3600 };
const context = (over: Partial<AttemptContext> = {}): AttemptContext => ({
  attempt: 2,
  now,
  windowEndsAt: new Date(now.getTime() + 3600_000),
  policy,
  attempted: ["a@x.test", "b@x.test", "c@x.test"],
  sentBefore: false,
  ...over,
});
const rcpt = (recipient: string, code: number, reply = "ok", enhanced_code?: string): RecipientReply => ({ recipient, code, reply, enhanced_code, command: `RCPT TO:<${recipient}>` });
const accepted = { ok: true as const, value: { code: 250, enhanced_code: "2.0.0", reply: "queued as 7" } };
const failed = (f: Partial<SmtpFailure>) => ({ ok: false as const, failure: { kind: "reply" as const, stage: "rcpt" as const, command: "RCPT TO", message: "failed", ...f } });
const all = (code: number) => ["a@x.test", "b@x.test", "c@x.test"].map((r) => rcpt(r, code));

describe("outcome of an attempt", () => {
  it("is sent when the relay took the mail for every recipient", () => {
    const outcome = classifyAttempt({ recipients: all(250), end: accepted }, context());
    expect(outcome).toMatchObject({ kind: "sent", code: 250, detail: "queued as 7" });
    expect(outcome.recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      ["a@x.test", "sent", 250],
      ["b@x.test", "sent", 250],
      ["c@x.test", "sent", 250],
    ]);
  });

  it("delivers to the accepted, retries the one refused temporarily on its own, and bounces the one refused for good", () => {
    const transaction: SmtpTransaction = { recipients: [rcpt("a@x.test", 250), rcpt("b@x.test", 452, "mailbox full", "4.2.2"), rcpt("c@x.test", 550, "no such user", "5.1.1")], end: accepted };
    const outcome = classifyAttempt(transaction, context());
    expect(outcome).toEqual({
      kind: "retry",
      delaySeconds: 60,
      code: 452,
      reason: "RCPT TO:<b@x.test> answered 452 4.2.2 mailbox full",
      recipients: [
        { address: "a@x.test", status: "sent", smtpCode: 250, detail: "queued as 7" },
        { address: "b@x.test", status: "deferred", smtpCode: 452, enhancedCode: "4.2.2", detail: "RCPT TO:<b@x.test> answered 452 4.2.2 mailbox full" },
        { address: "c@x.test", status: "bounced", smtpCode: 550, enhancedCode: "5.1.1", detail: "RCPT TO:<c@x.test> answered 550 5.1.1 no such user" },
      ],
    });
  });

  it("names the first temporary refusal as the reason to retry when the relay took the mail for the others", () => {
    const transaction: SmtpTransaction = { recipients: [rcpt("a@x.test", 250), rcpt("b@x.test", 452, "mailbox full", "4.2.2"), rcpt("c@x.test", 451, "try later", "4.3.0")], end: accepted };
    const outcome = classifyAttempt(transaction, context());
    expect(outcome).toMatchObject({ kind: "retry", code: 452, reason: "RCPT TO:<b@x.test> answered 452 4.2.2 mailbox full" });
    expect(outcome.recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      ["a@x.test", "sent", 250],
      ["b@x.test", "deferred", 452],
      ["c@x.test", "deferred", 451],
    ]);
  });

  it("is sent once the last waiting recipient is accepted on a later attempt, naming who never got it", () => {
    const outcome = classifyAttempt({ recipients: [rcpt("b@x.test", 250)], end: accepted }, context({ attempted: ["b@x.test"], sentBefore: true }));
    expect(outcome).toMatchObject({ kind: "sent", code: 250, detail: "queued as 7", recipients: [{ address: "b@x.test", status: "sent" }] });
  });

  it("is sent, not failed, when an earlier attempt delivered and the last waiting recipient is refused for good", () => {
    const transaction: SmtpTransaction = { recipients: [rcpt("b@x.test", 550, "gone")], end: failed({ code: 550, message: "RCPT TO:<b@x.test> answered 550 gone" }) };
    const outcome = classifyAttempt(transaction, context({ attempted: ["b@x.test"], sentBefore: true }));
    expect(outcome).toMatchObject({ kind: "sent", code: undefined, detail: "every recipient is settled; not delivered to b@x.test (RCPT TO:<b@x.test> answered 550 gone)" });
  });

  it("fails when every recipient is refused for good (each bounced), with the relay's first refusal as the reason", () => {
    const outcome = classifyAttempt({ recipients: all(550), end: failed({ code: 550, message: "RCPT TO:<a@x.test> answered 550 ok" }) }, context());
    expect(outcome).toMatchObject({ kind: "failed", code: 550, reason: "RCPT TO:<a@x.test> answered 550 ok" });
    expect(outcome.recipients.every((r) => r.status === "bounced")).toBe(true);
  });

  it("bounces every recipient when the relay refuses the message for good at the end of DATA, and fails them when it refuses the sender", () => {
    const mail = classifyAttempt({ recipients: [], end: failed({ stage: "mail", code: 553, message: "MAIL FROM answered 553 sender rejected" }) }, context());
    expect(mail).toMatchObject({ kind: "failed", code: 553, reason: "MAIL FROM answered 553 sender rejected" });
    expect(mail.recipients.map((r) => r.status)).toEqual(["failed", "failed", "failed"]);
    const data = classifyAttempt({ recipients: all(250), end: failed({ stage: "message", code: 554, enhanced_code: "5.7.1", message: "(end of data) answered 554 5.7.1 spam" }) }, context());
    expect(data).toMatchObject({ kind: "failed", code: 554 });
    expect(data.recipients.map((r) => [r.status, r.enhancedCode])).toEqual([["bounced", "5.7.1"], ["bounced", "5.7.1"], ["bounced", "5.7.1"]]);
    const content = classifyAttempt({ recipients: [], end: { ok: false, failure: { kind: "content", stage: "message", command: "(building the message)", message: "cannot be built" } } }, context());
    expect(content.recipients.map((r) => r.status)).toEqual(["failed", "failed", "failed"]);
  });

  it("retries everyone, changing no recipient it never reached, when the session fails before RCPT", () => {
    const outcome = classifyAttempt({ recipients: [], end: failed({ kind: "connection", stage: "connect", code: undefined, message: "connection refused" }) }, context());
    expect(outcome).toEqual({ kind: "retry", delaySeconds: 60, code: undefined, reason: "connection refused", recipients: [] });
  });

  it("defers the recipients the relay had accepted when the connection drops during DATA, and keeps the session's reason", () => {
    const transaction: SmtpTransaction = { recipients: [rcpt("a@x.test", 250), rcpt("b@x.test", 550, "gone")], end: failed({ kind: "connection", stage: "message", code: undefined, message: "connection closed" }) };
    const outcome = classifyAttempt(transaction, context({ attempted: ["a@x.test", "b@x.test"] }));
    expect(outcome).toMatchObject({ kind: "retry", reason: "connection closed" });
    expect(outcome.recipients.map((r) => [r.address, r.status])).toEqual([
      ["a@x.test", "deferred"],
      ["b@x.test", "bounced"],
    ]);
  });

  it("lands the last retry at the window's end", () => {
    const outcome = classifyAttempt({ recipients: all(451), end: failed({ code: 451, message: "RCPT TO:<a@x.test> answered 451 ok" }) }, context({ attempt: 9, windowEndsAt: new Date(now.getTime() + 45_000) }));
    expect(outcome).toMatchObject({ kind: "retry", delaySeconds: 45 });
  });

  it("fails the waiting recipients when the window has ended: the message fails if nobody got it", () => {
    for (const windowEndsAt of [now, new Date(now.getTime() + 999), new Date(now.getTime() - 1)]) {
      const outcome = classifyAttempt({ recipients: all(451), end: failed({ code: 451, message: "RCPT TO:<a@x.test> answered 451 ok" }) }, context({ attempt: 7, windowEndsAt }));
      expect(outcome).toMatchObject({ kind: "failed", code: 451, reason: "retry window of 72 h ended after 7 attempts; last error: RCPT TO:<a@x.test> answered 451 ok" });
      expect(outcome.recipients.map((r) => r.status)).toEqual(["failed", "failed", "failed"]);
    }
  });

  it("keeps each waiting recipient's own code when the window ends, not the code that ended the transaction", () => {
    // Every recipient refused temporarily: the transaction ends with the first refusal (452), but b's was 451.
    const transaction: SmtpTransaction = {
      recipients: [rcpt("a@x.test", 452, "mailbox full", "4.2.2"), rcpt("b@x.test", 451, "try later", "4.3.0")],
      end: failed({ code: 452, message: "RCPT TO:<a@x.test> answered 452 4.2.2 mailbox full" }),
    };
    const outcome = classifyAttempt(transaction, context({ attempted: ["a@x.test", "b@x.test"], windowEndsAt: now }));
    expect(outcome).toMatchObject({ kind: "failed", code: 452 });
    expect(outcome.recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      ["a@x.test", "failed", 452],
      ["b@x.test", "failed", 451],
    ]);
  });

  it("is sent when the window ends after some recipients got it, naming who never did", () => {
    const transaction: SmtpTransaction = { recipients: [rcpt("a@x.test", 250), rcpt("b@x.test", 451, "busy")], end: accepted };
    const outcome = classifyAttempt(transaction, context({ attempted: ["a@x.test", "b@x.test"], windowEndsAt: now }));
    expect(outcome).toMatchObject({ kind: "sent", code: 250 });
    expect(outcome.kind === "sent" && outcome.detail).toBe("queued as 7; not delivered to b@x.test (retry window of 72 h ended after 2 attempts; last error: RCPT TO:<b@x.test> answered 451 busy)");
    expect(outcome.recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      ["a@x.test", "sent", 250],
      ["b@x.test", "failed", 451],
    ]);
  });

  it("settles a message with no recipient left to try by what earlier attempts did", () => {
    const nobody: SmtpTransaction = { recipients: [], end: failed({ kind: "protocol", message: "no recipient is left to send to" }) };
    expect(classifyAttempt(nobody, context({ attempted: [], sentBefore: true }))).toMatchObject({ kind: "sent", recipients: [] });
    expect(classifyAttempt(nobody, context({ attempted: [], sentBefore: false }))).toMatchObject({ kind: "failed", reason: "no recipient is left to send to" });
  });
});
