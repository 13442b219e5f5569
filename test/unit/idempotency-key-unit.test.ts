// The Idempotency-Key header as clients send it (a Structured Field string, quoted or not) and the
// request fingerprint: canonical JSON, so key order anywhere in the body does not matter.
import { describe, expect, it } from "vitest";
import { fingerprintBody, parseIdempotencyKey } from "../../src/core/idempotency-key";

describe("parseIdempotencyKey", () => {
  it("takes the key bare or quoted, without the surrounding spaces", () => {
    expect(parseIdempotencyKey("order-1")).toEqual({ ok: true, key: "order-1" });
    expect(parseIdempotencyKey('"order-1"')).toEqual({ ok: true, key: "order-1" });
    expect(parseIdempotencyKey("  order-1 ")).toEqual({ ok: true, key: "order-1" });
    expect(parseIdempotencyKey(' "order-1" ')).toEqual({ ok: true, key: "order-1" });
  });

  it("unescapes a quoted string's \\\" and \\\\", () => {
    expect(parseIdempotencyKey('"say \\"hi\\" \\\\ bye"')).toEqual({ ok: true, key: 'say "hi" \\ bye' });
  });

  it("takes up to 255 characters of printable ASCII", () => {
    expect(parseIdempotencyKey("k".repeat(255))).toEqual({ ok: true, key: "k".repeat(255) });
    expect(parseIdempotencyKey("k".repeat(256))).toEqual({ ok: false, message: "must be at most 255 characters" });
    expect(parseIdempotencyKey("")).toEqual({ ok: false, message: "must not be empty" });
    expect(parseIdempotencyKey('""')).toEqual({ ok: false, message: "must not be empty" });
    for (const key of ["caf\u00e9", "tab\there", "del\u007f"]) expect(parseIdempotencyKey(key)).toEqual({ ok: false, message: "must be printable ASCII" });
  });
});

describe("fingerprintBody", () => {
  it("is the same for the same body with keys in another order, at any depth, arrays included", async () => {
    const a = await fingerprintBody({ to: ["x@example.com"], meta: [{ k: 1, v: { b: 2, a: 1 } }] });
    const b = await fingerprintBody({ meta: [{ v: { a: 1, b: 2 }, k: 1 }], to: ["x@example.com"] });
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).toBe(a);
  });

  it("differs when a value or the order of an array differs", async () => {
    const base = await fingerprintBody({ to: ["a@example.com", "b@example.com"], subject: "Hi" });
    expect(await fingerprintBody({ to: ["b@example.com", "a@example.com"], subject: "Hi" })).not.toBe(base);
    expect(await fingerprintBody({ to: ["a@example.com", "b@example.com"], subject: "Hi!" })).not.toBe(base);
  });
});
