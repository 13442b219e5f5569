import { describe, expect, it } from "vitest";
import { dataPayload } from "../../src/transport/smtp/commands";
import { buildMime, envelopeRecipients, createMessageId, type OutgoingMessage } from "../../src/core/message";

const message: OutgoingMessage = {
  messageId: "<abc@mailroom.test>",
  from: { name: "Mailroom", address: "noreply@mailroom.test" },
  to: [{ name: "Jane", address: "jane@example.com" }, { address: "joe@example.com" }],
  cc: [{ address: "jane@example.com" }, { address: "boss@example.com" }],
  bcc: [],
  replyTo: [],
  headers: {},
  attachments: [],
  subject: "Grüße",
  text: "Line one\r\n.starts with a dot\r\n",
  html: "<p>Hi</p>",
};

describe("message building", () => {
  it("puts every to and cc address in the envelope once", () => {
    expect(envelopeRecipients(message)).toEqual(["jane@example.com", "joe@example.com", "boss@example.com"]);
  });

  it("writes the headers itself, keeps the fixed Message-ID and never writes a Bcc header", () => {
    const mime = buildMime(message, new Date("2026-11-29T10:00:00Z"));
    const head = mime.slice(0, mime.indexOf("\r\n\r\n"));
    expect(head).toContain("From: Mailroom <noreply@mailroom.test>");
    expect(head).toContain("To: Jane <jane@example.com>, joe@example.com");
    expect(head).toContain("Cc: jane@example.com, boss@example.com");
    expect(head).toContain("Subject: =?UTF-8?B?R3LDvMOfZQ==?=");
    expect(head).toContain("Date: Sun, 29 Nov 2026 10:00:00 +0000");
    expect(head).toContain("Message-ID: <abc@mailroom.test>");
    expect(head).not.toMatch(/^bcc:/im);
    expect(head.match(/^Cc:/gim)).toHaveLength(1);
  });

  it("is the message itself (not dot-stuffed), uses CRLF only and ends in CRLF; its DATA payload is dot-stuffed", () => {
    const mime = buildMime(message);
    expect(mime.endsWith("\r\n")).toBe(true);
    expect(mime).not.toMatch(/\r\n\.\r\n/);
    expect(mime).toContain("\r\n.starts with a dot");
    expect(mime).not.toContain("\r\n..");
    expect(mime.replace(/\r\n/g, "")).not.toMatch(/[\r\n]/);
    const payload = dataPayload(mime);
    expect(payload).toBe(`${mime.replace(/\r\n\./g, "\r\n..")}.\r\n`);
    expect(payload.slice(0, -5)).not.toMatch(/\r\n\.\r\n/);
  });

  it("keeps a line that starts with two dots as it is: undoing worker-mailer's stuffing takes one dot, never two", () => {
    const mime = buildMime({ ...message, text: "..two dots\r\n...three\r\n" });
    expect(mime).toContain("\r\n..two dots\r\n...three\r\n");
  });

  it("gives a line of dots and a leading dot one dot more in the DATA payload, and ends a message without a final CRLF", () => {
    expect(dataPayload(".a\r\n..\r\n.\r\nb")).toBe("..a\r\n...\r\n..\r\nb\r\n.\r\n");
  });

  it("derives the Message-ID from the id and the sender's domain", () => {
    expect(createMessageId("123", { address: "a@mail.example" })).toBe("<123@mail.example>");
  });
});
