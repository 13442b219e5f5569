import { describe, expect, it } from "vitest";
import { formatMailbox, parseMailbox } from "../../src/core/address";

describe("parseMailbox", () => {
  it.each([
    ["jane@example.com", { address: "jane@example.com" }],
    ["  Jane@Example.COM ", { address: "Jane@example.com" }],
    ["Jane Doe <jane@example.com>", { name: "Jane Doe", address: "jane@example.com" }],
    ['"Doe, Jane" <jane@example.com>', { name: "Doe, Jane", address: "jane@example.com" }],
    ['"Jane \\"JD\\" Doe" <jane@example.com>', { name: 'Jane "JD" Doe', address: "jane@example.com" }],
    ["<jane@example.com>", { address: "jane@example.com" }],
    ["Zoë <zoe@bücher.example>", { name: "Zoë", address: "zoe@xn--bcher-kva.example" }],
    ["o'brien+tag@mail.example.co.uk", { address: "o'brien+tag@mail.example.co.uk" }],
    [`${"a".repeat(64)}@example.com`, { address: `${"a".repeat(64)}@example.com` }],
    [`a@${"b".repeat(63)}.example`, { address: `a@${"b".repeat(63)}.example` }],
    [`${"a".repeat(64)}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(53)}.example`, { address: `${"a".repeat(64)}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(53)}.example` }],
  ])("accepts %j", (input, mailbox) => {
    expect(parseMailbox(input)).toEqual({ ok: true, mailbox });
  });

  it.each([
    ["", "must look like"],
    ["jane", "must look like"],
    ["jane@", "must look like"],
    ["@example.com", "must look like"],
    ["jane@localhost", "invalid domain"],
    ["jane@-bad.example", "invalid domain"],
    ["jane@example.123", "invalid domain"],
    ["jane..doe@example.com", "invalid local part"],
    ["jane doe@example.com", "invalid local part"],
    ["jane@exa mple.com", "invalid domain"],
    ["bob@evil.example?ä", "invalid domain"],
    ["bob@evil.example/ä", "invalid domain"],
    ["bob@evil.example#ä", "invalid domain"],
    ["bob@[127.0.0.1]", "invalid domain"],
    ["jane@example.com\r\nRCPT TO:<x@evil.example>", "line break"],
    ["jane@example.com\r\n.example", "invalid domain"],
    ["Eve\r\nBcc: x@evil.example <eve@example.com>", "line break"],
    ["Ev\u2028e <eve@example.com>", "line break"],
    [`${"a".repeat(65)}@example.com`, "invalid local part"],
    [`a@${"b".repeat(64)}.example`, "invalid domain"],
    ["jürgen@example.com", "invalid local part"],
    [`${"a".repeat(64)}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(54)}.example`, "longer than 254"],
    [`N <${"a".repeat(60)}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}.example>`, "longer than 254"],
    [`${"N".repeat(201)} <n@example.com>`, "longer than 200"],
  ])("rejects %j", (input, error) => {
    const result = parseMailbox(input);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain(error);
  });

  it("formats a mailbox back for display", () => {
    expect(formatMailbox({ name: "Jane Doe", address: "jane@example.com" })).toBe("Jane Doe <jane@example.com>");
    expect(formatMailbox({ address: "jane@example.com" })).toBe("jane@example.com");
  });
});
