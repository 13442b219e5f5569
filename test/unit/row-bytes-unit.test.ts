import { describe, expect, it } from "vitest";
import { storedRowBytes, type NewMessage } from "../../src/store/messages";

const message = (fields: Partial<NewMessage>): NewMessage => ({
  id: "id", apiKeyName: "k", createdAt: "t", messageId: "<m>", from: { address: "a@b.example" }, to: [], cc: [], bcc: [], replyTo: [],
  headers: {}, attachments: [], tags: [], recipients: [], subject: "", ...fields,
});
const utf8 = (...texts: string[]) => texts.reduce((sum, t) => sum + new TextEncoder().encode(t).length, 0);

describe("storedRowBytes", () => {
  it("counts UTF-8 bytes of the stored text columns: ASCII 1, Latin 2, CJK 3, emoji 4 (a surrogate pair), a lone surrogate 3 (found by a second reader: it took the next character for its pair)", () => {
    const fixed = storedRowBytes(message({}));
    expect(storedRowBytes(message({ subject: "abc" })) - fixed).toBe(3);
    expect(storedRowBytes(message({ text: "é漢😀" })) - fixed).toBe(2 + 3 + 4);
    expect(storedRowBytes(message({ html: "\ud800" })) - fixed).toBe(3);
    // A lone high surrogate before another character is 3 bytes, and so is that character (not a pair of 4).
    expect(storedRowBytes(message({ html: "\ud800一" })) - fixed).toBe(6);
    expect(storedRowBytes(message({ html: "\udc00\ud800" })) - fixed).toBe(6);
    const full = message({ subject: "題", text: "漢", html: "字", headers: { "X-A": "標" }, tags: [{ name: "n", value: "v" }], to: [{ name: "張", address: "x@y.example" }] });
    const columns = [full.subject, full.text!, full.html!, "[]", JSON.stringify(full.headers), JSON.stringify(full.tags), ...[full.from, full.to, [], [], []].map((a) => JSON.stringify(a))];
    expect(storedRowBytes(full)).toBe(utf8(...columns));
  });
});
