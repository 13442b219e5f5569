import { describe, expect, it } from "vitest";
import { encodeAddressList, encodeUnstructured, encodeWords } from "../../src/core/header-encoding";

const decodeWords = (value: string) =>
  value
    .replace(/\r\n /g, " ")
    .split(" ")
    .map((w) => {
      const m = /^=\?UTF-8\?B\?(.*)\?=$/.exec(w);
      return m ? new TextDecoder().decode(Uint8Array.from(atob(m[1]!), (c) => c.charCodeAt(0))) : w;
    })
    .join("");

describe("header encoding", () => {
  it("leaves short printable ASCII alone", () => {
    expect(encodeUnstructured("Subject", "Welcome aboard")).toBe("Welcome aboard");
  });

  it("folds long ASCII at spaces with no line over 78 characters", () => {
    const subject = Array.from({ length: 40 }, (_, i) => `word${i}`).join(" ");
    const value = encodeUnstructured("Subject", subject);
    expect(value).toContain("\r\n ");
    expect(value.replace(/\r\n /g, " ")).toBe(subject);
    expect(`Subject: ${value}`.split("\r\n").every((line) => line.length <= 78)).toBe(true);
  });

  it.each([
    ["a long run of spaces", `Your order ${" ".repeat(70)} has shipped and is on its way to you now`],
    ["runs of spaces around folds", Array.from({ length: 30 }, (_, i) => `w${i}${" ".repeat(i % 4)}`).join(" ")],
    ["leading and trailing spaces", `   ${"spaced out ".repeat(12)}   `],
  ])("folds %s with no whitespace-only line, keeping every space (unfolding restores it)", (_name, subject) => {
    const value = encodeUnstructured("Subject", subject);
    const lines = `Subject: ${value}`.split("\r\n");
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) {
      expect(line.trim()).not.toBe("");
      expect(line.length).toBeLessThanOrEqual(78 + 4); // a fold keeps its run of up to 4 spaces
    }
    expect(value.replace(/\r\n(?=[ \t])/g, "")).toBe(subject);
  });

  it("encodes a run of 77 or more spaces, which no fold could shorten, as encoded-words", () => {
    const subject = `a${" ".repeat(200)}b`;
    const value = encodeUnstructured("Subject", subject);
    expect(`Subject: ${value}`.split("\r\n").every((line) => line.trim() !== "" && line.length <= 78)).toBe(true);
    expect(decodeWords(value)).toBe(subject);
  });

  it("encodes non-ASCII as UTF-8 encoded-words that never split a character", () => {
    const subject = "Grüße aus Köln 🎉 ".repeat(8).trim();
    const value = encodeUnstructured("Subject", subject);
    expect(value).toMatch(/^[\x20-\x7e\r\n]+$/);
    expect(`Subject: ${value}`.split("\r\n").every((line) => line.length <= 78)).toBe(true);
    for (const word of encodeWords(subject)) expect(word.length).toBeLessThanOrEqual(75);
    expect(decodeWords(value)).toBe(subject);
  });

  it("folds a long non-ASCII display name between its encoded-words", () => {
    const name = "山田太郎".repeat(50);
    const value = encodeAddressList("From", [{ name, address: "taro@example.jp" }, { name: "Zoë", address: "z@example.com" }]);
    expect(`From: ${value}`.split("\r\n").every((line) => line.length <= 78)).toBe(true);
    expect(decodeWords(value.split(" <taro@")[0]!)).toBe(name);
    expect(value.replace(/\r\n /g, " ")).toMatch(/ <taro@example\.jp>, =\?UTF-8\?B\?Wm\/Dqw==\?= <z@example\.com>$/);
  });

  it("quotes and escapes ASCII display names, encodes others, folds between addresses", () => {
    expect(encodeAddressList("From", [{ name: "Jane Doe", address: "j@example.com" }])).toBe("Jane Doe <j@example.com>");
    expect(encodeAddressList("From", [{ name: 'Doe, "JD"', address: "j@example.com" }])).toBe('"Doe, \\"JD\\"" <j@example.com>');
    expect(encodeAddressList("From", [{ name: "Zoë", address: "z@example.com" }])).toBe("=?UTF-8?B?Wm/Dqw==?= <z@example.com>");
    const many = Array.from({ length: 10 }, (_, i) => ({ address: `recipient${i}@example.com` }));
    const value = encodeAddressList("To", many);
    expect(`To: ${value}`.split("\r\n").every((line) => line.length <= 78)).toBe(true);
    expect(value.replace(/\r\n /g, " ")).toBe(many.map((m) => m.address).join(", "));
  });
});
