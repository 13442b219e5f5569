// The edges of bounce handling that the other unit tests leave open, each pinned by a case a mutation pass
// found unguarded: which Feedback-Types are complaints, the cap on an ARF report's recipients, which mails
// look like bounces, reports without the multipart/report wrapper, the fields a DSN group is read from,
// return-path tokens of the wrong length or with a forged last byte, the envelope id's derivation, the
// statuses that suppress an address, xtext, the suppressed-only retry, and the bounce settings.
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config";
import { classifyAttempt } from "../../src/core/outcome";
import { addressOf, MAX_REPORTED_RECIPIENTS, readReport } from "../../src/core/reports";
import { envelopeIdFor, readReturnPath, returnPathFor } from "../../src/core/return-path";
import { ADDRESS_BAD_STATUSES, suppressesAddress } from "../../src/core/suppression";
import { attribute, parseReportMail } from "../../src/delivery/reports";
import { xtext } from "../../src/transport/smtp/commands";
import { arfComplaint, postfixBounce, postfixSuccess, type ReportFixture } from "../fixtures/reports";

const fixture: ReportFixture = { to: "bounces+token@bounce.mailroom.test", recipient: "gone@example.com" };
const parse = async (text: string, envelopeFrom = "") => (await parseReportMail(new TextEncoder().encode(text), envelopeFrom))!;
const firstRecipient = async (text: string) => {
  const report = await parse(text);
  if (report.kind !== "delivery_status") throw new Error(`not a DSN: ${report.kind}`);
  return report.recipients[0];
};

describe("complaints", () => {
  it("reads an ARF report without a Feedback-Type, or of type other, fraud or virus, as a complaint", async () => {
    expect(await parse(arfComplaint(fixture).replace("Feedback-Type: abuse\r\n", ""))).toMatchObject({ kind: "complaint", feedbackType: "other", recipients: ["gone@example.com"] });
    for (const type of ["other", "fraud", "virus", "Abuse"]) {
      expect(await parse(arfComplaint(fixture).replace("Feedback-Type: abuse", `Feedback-Type: ${type}`))).toMatchObject({ kind: "complaint", feedbackType: type.toLowerCase() });
    }
  });

  it("reads at most 100 Original-Rcpt-To fields of one report", async () => {
    const many = Array.from({ length: 150 }, (_, i) => `Original-Rcpt-To: <r${i}@example.com>`).join("\r\n");
    const report = await parse(arfComplaint(fixture).replace("Original-Rcpt-To: <gone@example.com>", many));
    expect(report.kind === "complaint" && report.recipients).toHaveLength(MAX_REPORTED_RECIPIENTS);
    expect(report.kind === "complaint" && report.recipients.at(-1)).toBe("r99@example.com");
  });

  it("reads a feedback-report part outside a multipart/report as no complaint", () => {
    const mail = {
      headers: [{ key: "from", value: "Pat <pat@example.com>" }, { key: "content-type", value: "multipart/mixed; boundary=x" }],
      attachments: [{ mimeType: "message/feedback-report", content: "Feedback-Type: abuse\r\nOriginal-Rcpt-To: <gone@example.com>\r\n" }],
    };
    expect(readReport(mail, "pat@example.com")).toEqual({ kind: "not_a_report" });
  });
});

describe("bounces without a report", () => {
  it("reads a mail from MAILER-DAEMON as a bounce even when it came from a non-null sender", async () => {
    const bounce = "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example>\r\nTo: x\r\nSubject: Undeliverable\r\n\r\n<gone@example.com>: no such user\r\n";
    expect((await parse(bounce, "bounces@mx.example")).kind).toBe("undetermined");
  });

  it("reads a delivery-status part without the multipart/report wrapper as a DSN", () => {
    const mail = {
      headers: [{ key: "from", value: "Pat <pat@example.com>" }, { key: "content-type", value: "multipart/mixed; boundary=x" }],
      attachments: [{ mimeType: "message/delivery-status", content: "Reporting-MTA: dns; relay.example\r\n\r\nFinal-Recipient: rfc822; gone@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n" }],
    };
    expect(readReport(mail, "pat@example.com")).toMatchObject({ kind: "delivery_status", recipients: [{ addresses: ["gone@example.com"], action: "failed", status: "5.1.1" }] });
  });

  it("attributes a bounce naming several of the message's recipients to none, and one to a single-recipient message whatever it names", () => {
    const both = { kind: "undetermined" as const, text: "could not deliver to <a@example.com> nor to <b@example.com>" };
    expect(attribute(both, ["a@example.com", "b@example.com"])).toEqual({ attributed: [], unattributed: 2 });
    const forwarded = { kind: "undetermined" as const, text: "<alias@forwarder.example>: no mailbox here by that name" };
    expect(attribute(forwarded, ["gone@example.com"])).toEqual({ attributed: [{ address: "gone@example.com", outcome: "undetermined", detail: expect.any(String) }], unattributed: 0 });
  });
});

describe("delivery status fields", () => {
  it("reads expanded as delivered, keeping what the report said", async () => {
    expect(await firstRecipient(postfixSuccess(fixture).replace("Action: relayed", "Action: expanded"))).toMatchObject({ action: "delivered", reportedAction: "expanded" });
  });

  it("reads no recipient from a group with an Action it does not know", async () => {
    const report = await parse(postfixSuccess(fixture).replace("Action: relayed", "Action: frobnicated"));
    expect(report).toMatchObject({ kind: "delivery_status", recipients: [] });
  });

  it("takes the SMTP code only from an smtp diagnostic, and the status only when it is one", async () => {
    const xPostfix = await firstRecipient(postfixBounce(fixture).replace("Diagnostic-Code: smtp;", "Diagnostic-Code: X-Postfix;"));
    expect(xPostfix!.diagnostic).toMatch(/^X-Postfix; 550/);
    expect(xPostfix!.smtpCode).toBeUndefined();
    const noStatus = await firstRecipient(postfixBounce(fixture).replace("Status: 5.1.1", "Status: unknown"));
    expect(noStatus!.status).toBeUndefined();
    expect(attribute({ kind: "delivery_status", recipients: [noStatus!] }, ["gone@example.com"]).attributed[0]!.enhancedCode).toBeUndefined();
    expect((await firstRecipient(postfixBounce(fixture).replace("Status: 5.1.1", "Status: 5.1.1 (bad destination mailbox address)")))!.status).toBe("5.1.1");
  });

  it("reads no address of a type other than rfc822 or utf-8", async () => {
    expect(addressOf("x400; gone@example.com")).toBeUndefined();
    expect(addressOf("utf-8; gone@example.com")).toBe("gone@example.com");
    const report = await parse(postfixBounce(fixture).replace("Final-Recipient: rfc822; gone@example.com\r\nOriginal-Recipient: rfc822;gone@example.com", "Final-Recipient: x-local; gone@example.com"));
    expect(report).toMatchObject({ kind: "delivery_status", recipients: [] });
  });
});

describe("return-path tokens", () => {
  const bounce = { bounceAddress: "bounces@mail.acme.example", secret: "s".repeat(32) };
  const id = "6f1c2f0e-8a7b-4f7e-9a53-2f4f2f3b8f11";
  const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

  it("refuse a token with a character more, even one that decodes to the same bytes", async () => {
    const path = await returnPathFor(id, bounce);
    const [local, domain] = path.split("@") as [string, string];
    expect(await readReturnPath(`${local}a@${domain}`, bounce)).toEqual({ ok: false, reason: "malformed_token" });
  });

  it("refuse a token whose last MAC byte is forged", async () => {
    const path = await returnPathFor(id, bounce);
    const [local, domain] = path.split("@") as [string, string];
    // The last character carries the last byte's 3 low bits (and 2 zero bits): flip one of those 3.
    const forged = local.slice(0, -1) + ALPHABET[ALPHABET.indexOf(local.at(-1)!) ^ 4];
    expect(await readReturnPath(`${forged}@${domain}`, bounce)).toEqual({ ok: false, reason: "forged_token" });
  });

  it("derive the envelope id as HMAC-SHA256(secret, 'mailroom envelope id' NUL id bytes), its first 16 bytes in base32", async () => {
    const secret = bounce.secret;
    const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const idBytes = Uint8Array.from(id.replace(/-/g, "").match(/../g)!, (h) => parseInt(h, 16));
    const label = new TextEncoder().encode("mailroom envelope id\0");
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new Uint8Array([...label, ...idBytes]))).subarray(0, 16);
    const bits = [...mac].map((b) => b.toString(2).padStart(8, "0")).join("");
    const expected = (bits.match(/.{1,5}/g) ?? []).map((chunk) => ALPHABET[parseInt(chunk.padEnd(5, "0"), 2)]).join("");
    expect(await envelopeIdFor(id, secret)).toBe(expected);
  });
});

describe("statuses that suppress an address", () => {
  it("are exactly the bad-address ones: 5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10 and 5.2.1", () => {
    expect([...ADDRESS_BAD_STATUSES].sort()).toEqual(["5.1.1", "5.1.10", "5.1.2", "5.1.3", "5.1.6", "5.2.1"]);
    for (const status of ["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"]) expect(suppressesAddress(status), status).toBe(true);
    for (const status of ["5.2.2", "5.7.1", "5.6.0", "5.1.7", "5.1.8", "5.4.4", "4.1.1", "4.2.1", "2.0.0", "", undefined, null]) expect(suppressesAddress(status), String(status)).toBe(false);
  });
});

describe("xtext (RFC 3461 §4)", () => {
  it("encodes +, =, space, controls and non-ASCII bytes as +HH in upper case, and nothing else", () => {
    expect(xtext("a+b=c d\t!~é")).toBe("a+2Bb+3Dc+20d+09!~+C3+A9");
    expect(xtext("bob+2024@example.com")).toBe("bob+2B2024@example.com");
  });
});

describe("an attempt that finds only suppressed recipients left", () => {
  it("is sent, not failed, when an earlier attempt already delivered the mail to someone", () => {
    const now = new Date("2026-11-30T12:00:00.000Z");
    const outcome = classifyAttempt(
      { recipients: [], end: { ok: false, failure: { kind: "protocol", stage: "rcpt", command: "RCPT TO", message: "no recipient is left to send to" } } },
      {
        attempt: 2,
        now,
        windowEndsAt: new Date(now.getTime() + 3600_000),
        policy: { baseDelaySeconds: 30, maxDelaySeconds: 3600, windowSeconds: 72 * 3600 },
        attempted: [],
        sentBefore: true,
        suppressed: [{ address: "b@x.test", origin: "bounce" }],
      },
    );
    expect(outcome).toMatchObject({ kind: "sent", recipients: [{ address: "b@x.test", status: "suppressed", detail: "not sent: the address is on the suppression list (bounce)" }] });
  });
});

describe("bounce settings", () => {
  const base = { SMTP_HOST: "smtp.relay.example", MAIL_FROM: "Acme <noreply@acme.example>", API_KEYS: "web:62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef" };
  const problems = (env: Record<string, unknown>): string[] => {
    try {
      parseConfig(env);
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
  };

  it("need a secret of at least 32 characters: 31 is refused", () => {
    expect(problems({ ...base, BOUNCE_ADDRESS: "bounces@mail.example.com", BOUNCE_SECRET: "s".repeat(31) })).toEqual([expect.stringMatching(/^BOUNCE_SECRET: must be at least 32 characters/)]);
    expect(problems({ ...base, BOUNCE_ADDRESS: "bounces@mail.example.com", BOUNCE_SECRET: "s".repeat(32) })).toEqual([]);
  });

  it("refuse a bounce address with a display name", () => {
    expect(problems({ ...base, BOUNCE_ADDRESS: "Bounces <bounces@mail.example.com>", BOUNCE_SECRET: "s".repeat(32) })).toEqual([expect.stringMatching(/^BOUNCE_ADDRESS: must be a bare address/)]);
  });
});
