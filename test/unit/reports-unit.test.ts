// The report parser on what MTAs really send back (Postfix, Exim, Sendmail, Exchange/Outlook, Gmail, Amazon
// SES; delays, successes, ARF complaints, plain bounces), parsed by postal-mime inside workerd as the email
// handler does, and on hostile input: a seeded fuzz pass over broken and random MIME, huge headers, deep
// nesting and bad encodings. No exception escapes, and no recipient is ever made up.
import { describe, expect, it } from "vitest";
import { addressOf, decodeXtext, fieldGroups, readReport, type Report } from "../../src/core/reports";
import { attribute, parseReportMail } from "../../src/delivery/reports";
import { arfComplaint, FAILURE_DSNS, plainBounce, postfixDelay, postfixSuccess, type ReportFixture } from "../fixtures/reports";

const fixture: ReportFixture = { to: "bounces+token@bounce.mailroom.test", recipient: "gone@example.com", envelopeId: "6f1c2f0e-8a7b-4f7e-9a53-2f4f2f3b8f11" };
const bytes = (text: string) => new TextEncoder().encode(text);
const parse = async (text: string) => (await parseReportMail(bytes(text)))!;

describe("delivery status notifications", () => {
  for (const [mta, build] of Object.entries(FAILURE_DSNS)) {
    it(`reads ${mta}'s: the recipient failed, with its status and diagnostic`, async () => {
      const report = await parse(build(fixture));
      expect(report.kind).toBe("delivery_status");
      if (report.kind !== "delivery_status") return;
      expect(report.recipients).toHaveLength(1);
      const [r] = report.recipients;
      expect(r!.addresses.map((a) => a.toLowerCase())).toContain("gone@example.com");
      expect(r!.action).toBe("failed");
      expect(r!.status).toMatch(/^5\.\d+\.\d+$/);
      expect(r!.smtpCode).toBe(550);
      expect(r!.diagnostic).toMatch(/^smtp; ?550/i);
      const { attributed } = attribute(report, ["Gone@Example.com", "other@example.com"]);
      expect(attributed).toMatchObject([{ address: "Gone@Example.com", outcome: "bounced", smtpCode: 550, enhancedCode: r!.status }]);
    });
  }

  it("keeps the whole folded diagnostic and the envelope id", async () => {
    const report = await parse(FAILURE_DSNS.postfix(fixture));
    expect(report).toMatchObject({ envelopeId: fixture.envelopeId, recipients: [{ status: "5.1.1", diagnostic: "smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown" }] });
    const gmail = await parse(FAILURE_DSNS.gmail(fixture));
    expect(gmail.kind === "delivery_status" && gmail.recipients[0]!.diagnostic).toMatch(/does not exist\. Please try 550-5\.1\.1 double-checking .* gsmtp$/);
  });

  it("reads a delay warning and a success report", async () => {
    expect(await parse(postfixDelay(fixture))).toMatchObject({ kind: "delivery_status", recipients: [{ addresses: ["gone@example.com"], action: "delayed", status: "4.4.1" }] });
    const delayed = await parse(postfixDelay(fixture));
    expect(attribute(delayed, ["gone@example.com"]).attributed).toMatchObject([{ outcome: "delayed", enhancedCode: "4.4.1" }]);
    const success = await parse(postfixSuccess(fixture));
    expect(success).toMatchObject({ kind: "delivery_status", recipients: [{ action: "delivered", reportedAction: "relayed", status: "2.0.0", smtpCode: 250 }] });
    expect(attribute(success, ["gone@example.com"]).attributed).toMatchObject([{ outcome: "delivered", detail: expect.stringMatching(/^a delivery status report said relayed; /) }]);
  });

  it("attributes nothing a report does not name, and counts what it names that is not the message's", async () => {
    const report = await parse(FAILURE_DSNS.exim(fixture));
    expect(attribute(report, ["someone-else@example.com"])).toEqual({ attributed: [], unattributed: 1 });
  });
});

describe("recipients as relays echo them", () => {
  it("keeps a + in an address (Final-Recipient and Original-Rcpt-To are not xtext), and decodes an xtext ORCPT", async () => {
    const plus = { ...fixture, recipient: "bob+2024@example.com" };
    const report = await parse(FAILURE_DSNS.exim(plus));
    expect(attribute(report, ["bob+2024@example.com"]).attributed).toMatchObject([{ address: "bob+2024@example.com", outcome: "bounced" }]);
    const complaint = await parse(arfComplaint({ ...fixture, recipient: "alice+ad@example.com" }));
    expect(attribute(complaint, ["alice+ad@example.com", "x@example.com"]).attributed).toMatchObject([{ address: "alice+ad@example.com" }]);
    // An ORCPT echoed in xtext (a+2Bb for a+b), with the Final-Recipient rewritten by a forwarder.
    const xtext = (await parse(FAILURE_DSNS.postfix(fixture).replace("Original-Recipient: rfc822;gone@example.com", "Original-Recipient: rfc822;a+2Bb@example.com")))!;
    expect(attribute(xtext, ["a+b@example.com"]).attributed).toMatchObject([{ address: "a+b@example.com" }]);
    // An Original-Recipient that is none of the message's falls back to the Final-Recipient.
    const moved = await parse(FAILURE_DSNS.postfix(fixture).replace("Original-Recipient: rfc822;gone@example.com", "Original-Recipient: rfc822;alias@example.com"));
    expect(attribute(moved, ["gone@example.com"]).attributed).toMatchObject([{ address: "gone@example.com" }]);
  });
});

describe("complaints (ARF) and plain bounces", () => {
  it("reads not-spam and auth-failure feedback as no complaint", async () => {
    for (const type of ["not-spam", "auth-failure"]) {
      const report = await parse(arfComplaint(fixture).replace("Feedback-Type: abuse", `Feedback-Type: ${type}`));
      expect(report).toEqual({ kind: "not_a_complaint", feedbackType: type });
      expect(attribute(report, ["gone@example.com"]).attributed).toEqual([]);
    }
  });

  it("reads an auto-reply to the return path as no report at all", async () => {
    const reply = "From: Gone <gone@example.com>\r\nTo: x\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nI am away until Monday.\r\n";
    expect(await parseReportMail(bytes(reply), "gone@example.com")).toEqual({ kind: "not_a_report" });
    expect((await parseReportMail(bytes(reply), ""))!.kind).toBe("undetermined"); // from the null sender it is a bounce
    expect((await parseReportMail(bytes(reply.replace("Subject:", "X-Failed-Recipients: gone@example.com\r\nSubject:")), "gone@example.com"))!.kind).toBe("undetermined");
  });

  it("reads an ARF report: the feedback type, the recipient and the original Message-ID", async () => {
    const report = await parse(arfComplaint({ ...fixture, messageId: "<abc@mailroom.test>" }));
    expect(report).toEqual({ kind: "complaint", feedbackType: "abuse", recipients: ["gone@example.com"], originalMessageId: "<abc@mailroom.test>" });
    expect(attribute(report, ["gone@example.com", "b@example.com"]).attributed).toMatchObject([{ address: "gone@example.com", outcome: "complained" }]);
  });

  it("attributes a complaint without Original-Rcpt-To only to a single-recipient message", async () => {
    const report = await parse(arfComplaint({ ...fixture, includeRecipient: false }));
    expect(report).toMatchObject({ kind: "complaint", recipients: [] });
    expect(attribute(report, ["gone@example.com"]).attributed).toMatchObject([{ address: "gone@example.com", outcome: "complained" }]);
    expect(attribute(report, ["gone@example.com", "b@example.com"]).attributed).toEqual([]);
  });

  it("reads a bounce without a report as undetermined, for the one recipient it names", async () => {
    const report = await parse(plainBounce(fixture));
    expect(report.kind).toBe("undetermined");
    expect(attribute(report, ["gone@example.com", "b@example.com"]).attributed).toMatchObject([{ address: "gone@example.com", outcome: "undetermined" }]);
    expect(attribute(report, ["a@example.com", "b@example.com"]).attributed).toEqual([]);
    // A recipient inside a longer address is not named by it: bob@ is not jimbob@, nor gone@example.com.au.
    const longer = await parse(plainBounce({ ...fixture, recipient: "jimbob@example.com.au" }));
    expect(attribute(longer, ["bob@example.com", "other@example.com"]).attributed).toEqual([]);
    const named = await parse(plainBounce({ ...fixture, recipient: "bob@example.com" }));
    expect(attribute(named, ["bob@example.com", "other@example.com"]).attributed).toMatchObject([{ address: "bob@example.com" }]);
  });
});

describe("field parsing", () => {
  it("unfolds, lower-cases names, splits groups and cuts long values", () => {
    expect(fieldGroups("A: 1\r\n  more\r\nB:2\r\n\r\n\r\nC: 3\n")).toEqual([[["a", "1 more"], ["b", "2"]], [["c", "3"]]]);
    const long = fieldGroups(`X: ${"y".repeat(5000)}\n${" z\n".repeat(5000)}`);
    expect(long[0]![0]![1].length).toBe(1000);
    expect(fieldGroups("no colon here\n:empty name\n")).toEqual([]);
  });

  it("reads typed addresses, and refuses what is not one; xtext only with upper-case hex", () => {
    expect(addressOf("rfc822; <Gone@Example.com>")).toBe("Gone@Example.com");
    expect(addressOf("rfc822;a+2Bb@example.com")).toBe("a+2Bb@example.com");
    expect(decodeXtext("a+2Bb@example.com")).toBe("a+b@example.com");
    expect(decodeXtext("bob+2024@example.com")).toBe("bob 24@example.com");
    expect(decodeXtext("alice+ad@example.com")).toBe("alice+ad@example.com");
    expect(addressOf("x400; /C=US/")).toBeUndefined();
    expect(addressOf("rfc822; not an address")).toBeUndefined();
    expect(addressOf("rfc822; @example.com")).toBeUndefined();
    expect(addressOf(undefined)).toBeUndefined();
  });
});

describe("hostile reports", () => {
  /** mulberry32: the same cases every run. */
  const random = (seed: number) => () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  function mutate(text: string, next: () => number): Uint8Array {
    const data = bytes(text);
    switch (Math.floor(next() * 5)) {
      case 0: // flip bytes
        for (let i = 0; i < 20; i++) data[Math.floor(next() * data.length)] = Math.floor(next() * 256);
        return data;
      case 1: // cut anywhere
        return data.subarray(0, Math.floor(next() * data.length));
      case 2: // drop a line
        return bytes(text.split("\r\n").filter(() => next() > 0.1).join("\r\n"));
      case 3: // duplicate a stretch
        return bytes(text.slice(0, Math.floor(next() * text.length)) + text.slice(Math.floor(next() * text.length)));
      default: // random bytes
        return Uint8Array.from({ length: Math.floor(next() * 4000) }, () => Math.floor(next() * 256));
    }
  }

  const fixtures = [...Object.values(FAILURE_DSNS).map((b) => b(fixture)), postfixDelay(fixture), postfixSuccess(fixture), arfComplaint(fixture), plainBounce(fixture)];
  const allowed = new Set(["delivery_status", "complaint", "not_a_complaint", "undetermined", "not_a_report"]);

  it("never throw, and never name a recipient the input does not contain (800 mutated reports)", async () => {
    const next = random(20261202);
    for (let i = 0; i < 800; i++) {
      const raw = mutate(fixtures[i % fixtures.length]!, next);
      const report: Report | undefined = await parseReportMail(raw);
      if (!report) continue;
      expect(allowed.has(report.kind)).toBe(true);
      const text = new TextDecoder().decode(raw).toLowerCase();
      if (report.kind === "delivery_status") for (const r of report.recipients) for (const a of r.addresses) expect(text).toContain(a.toLowerCase().split("@")[1]!);
      expect(attribute(report, ["nobody@nowhere.example", "second@nowhere.example"]).attributed).toEqual([]);
    }
  });

  it("stay bounded on huge headers, deep nesting, many recipients and bad encodings", async () => {
    const huge = `From: x@example.com\r\nSubject: ${"a".repeat(300 * 1024)}\r\n\r\nbody`;
    expect(await parseReportMail(bytes(huge))).toBeUndefined(); // over postal-mime's header limit: unreadable
    let nested = "body";
    for (let i = 0; i < 200; i++) nested = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${nested}\r\n--b${i}--`;
    expect(await parseReportMail(bytes(`From: x@example.com\r\n${nested}`))).toBeUndefined(); // deeper than 16
    const many = Array.from({ length: 500 }, (_, i) => `Final-Recipient: rfc822; r${i}@example.com\r\nAction: failed\r\nStatus: 5.1.1`).join("\r\n\r\n");
    const manyReport = await parse(`Content-Type: multipart/report; report-type=delivery-status; boundary="m"\r\n\r\n--m\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n${many}\r\n--m--\r\n`);
    expect(manyReport.kind === "delivery_status" && manyReport.recipients.length).toBe(100);
    const badEncoding = `Content-Type: multipart/report; report-type=delivery-status; boundary="e"\r\n\r\n--e\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all===\r\n--e\r\nContent-Type: text/plain; charset=x-unknown-charset\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n--e--\r\n`;
    const bad = await parseReportMail(bytes(badEncoding));
    expect(bad === undefined || allowed.has(bad.kind)).toBe(true);
  });

  it("reads nothing into a report of another type", () => {
    const other = readReport({ headers: [{ key: "content-type", value: "multipart/report; report-type=disposition-notification" }], attachments: [{ mimeType: "message/disposition-notification", content: "Final-Recipient: rfc822; a@example.com\r\nDisposition: manual-action/MDN-sent-manually; displayed" }] });
    expect(other.kind).toBe("undetermined");
  });
});
