import { describe, expect, it } from "vitest";
import { buildMime, type OutgoingMessage } from "../../src/core/message";

// The consumer hands buildMime a whole stored record, bcc included: nothing of it may reach the wire.
const record: OutgoingMessage = {
  messageId: "<abc@mailroom.test>",
  from: { address: "noreply@mailroom.test" },
  to: [{ address: "jane@example.com" }],
  cc: [],
  bcc: [{ name: "Hidden", address: "hidden@example.com" }],
  replyTo: [],
  headers: {},
  attachments: [],
  subject: "Hello",
  text: "Hi",
};

describe("bcc on a stored record", () => {
  it("never appears in the MIME message", () => {
    const mime = buildMime(record);
    expect(mime.slice(0, mime.indexOf("\r\n\r\n"))).not.toMatch(/^bcc:/im);
    expect(mime).not.toContain("hidden@example.com");
  });
});
