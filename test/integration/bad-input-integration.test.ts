// Bad requests get the documented status and error shape, and change nothing: no row, no queue
// message (the real queue binding is wrapped to count sends), no mail.
import { describe, expect, it } from "vitest";
import { api, messageRowsFor, postCounted, uniqueRecipient } from "../helpers/api";
import { MAX_REQUEST_BYTES } from "../../src/app";

const send = (body: string, headers: Record<string, string> = {}) => postCounted(body, { headers });

const valid = (to: string) => ({ to, subject: "Hello", text: "Hi" });

describe("bad input changes nothing", () => {
  const cases: [string, (to: string) => [string, Record<string, string>?], number, string, string?][] = [
    ["invalid JSON", (to) => [`{"to": "${to}", "subject": `], 400, "invalid_json"],
    ["a form body", (to) => [`to=${to}&subject=x&text=y`, { "Content-Type": "application/x-www-form-urlencoded" }], 415, "unsupported_media_type"],
    ["no content type", (to) => [JSON.stringify(valid(to)), { "Content-Type": "" }], 415, "unsupported_media_type"],
    ["a missing to", (to) => [JSON.stringify({ subject: `Hello ${to}`, text: "Hi" })], 422, "validation_error", "to"],
    ["an empty to list", (to) => [JSON.stringify({ to: [], subject: `Hello ${to}`, text: "Hi" })], 422, "validation_error", "to"],
    ["a malformed address", (to) => [JSON.stringify({ ...valid(to), to: [to, "not-an-address"] })], 422, "validation_error", "to.1"],
    ["an address with a line break", (to) => [JSON.stringify({ ...valid(to), cc: "Eve\r\nBcc: x@evil.example <e@evil.example>" })], 422, "validation_error", "cc.0"],
    ["no body", (to) => [JSON.stringify({ to, subject: "Hello" })], 422, "validation_error", "text"],
    ["a subject with a line break", (to) => [JSON.stringify({ ...valid(to), subject: "Hi\r\nBcc: x@evil.example" })], 422, "validation_error", "subject"],
    ["an unknown field", (to) => [JSON.stringify({ ...valid(to), priority: "high" })], 422, "validation_error", "(body)"],
    ["a JSON array", () => ["[]"], 422, "validation_error", "(body)"],
    ["51 recipients", (to) => [JSON.stringify({ ...valid(to), cc: Array.from({ length: 50 }, (_, i) => `cc${i}@example.com`) })], 422, "validation_error", "to"],
    ["an empty Idempotency-Key", (to) => [JSON.stringify(valid(to)), { "Idempotency-Key": "" }], 422, "validation_error", "headers.Idempotency-Key"],
    ["an Idempotency-Key of 256 characters", (to) => [JSON.stringify(valid(to)), { "Idempotency-Key": "k".repeat(256) }], 422, "validation_error", "headers.Idempotency-Key"],
    // Tomorrow, so that only the missing offset (not the 30-day limit) can refuse it.
    ["a scheduled_at without an offset", (to) => [JSON.stringify({ ...valid(to), scheduled_at: new Date(Date.now() + 86_400_000).toISOString().slice(0, 19) }), {}], 422, "validation_error", "scheduled_at"],
    ["a scheduled_at more than 30 days ahead", (to) => [JSON.stringify({ ...valid(to), scheduled_at: new Date(Date.now() + 30 * 86_400_000 + 60_000).toISOString() }), {}], 422, "validation_error", "scheduled_at"],
    ["a body over 8 MiB", (to) => [JSON.stringify({ ...valid(to), text: "x".repeat(MAX_REQUEST_BYTES) })], 413, "payload_too_large"],
  ];

  it.each(cases)("%s", async (_name, build, status, code, issuePath) => {
    const to = uniqueRecipient("bad");
    const [body, headers] = build(to);
    const result = await send(body, headers);
    expect(result.res.status).toBe(status);
    expect(result.body.error.code).toBe(code);
    expect(result.body.error.message).toEqual(expect.any(String));
    if (issuePath) {
      expect(result.body.error.issues?.map((i: { path: string }) => i.path)).toContain(issuePath);
      // Where the Resend SDKs look: the top-level message names the field.
      expect(result.body).toMatchObject({ statusCode: status, name: code, message: expect.stringContaining(`${issuePath}: `) });
    }
    expect(result.enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("the same wrapper counts a valid request, so the checks above can fail", async () => {
    const to = uniqueRecipient("good");
    const result = await send(JSON.stringify(valid(to)));
    expect(result.res.status).toBe(202);
    expect(result.enqueued).toBe(1);
    expect(await messageRowsFor(to)).toBe(1);
  });
});

/** The one 401 every missing, malformed or wrong key gets. */
const UNAUTHORIZED = {
  statusCode: 401,
  name: "unauthorized",
  message: "a valid API key is required: Authorization: Bearer <key>",
  error: { code: "unauthorized", message: "a valid API key is required: Authorization: Bearer <key>" },
};

describe("auth and routing errors", () => {
  it.each([
    ["no Authorization header", null],
    ["a wrong key", "not-the-key"],
    ["a malformed header", "has spaces in it"],
    ["an empty key", ""],
    // The configured value is the key's SHA-256: presenting the digest itself must not authenticate.
    ["the configured digest instead of the key", "62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef"],
  ])("401 unauthorized for %s", async (_name, key) => {
    const res = await api("/v1/emails", { method: "POST", key, json: valid(uniqueRecipient()) });
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toBe("Bearer");
    expect(await res.json()).toEqual(UNAUTHORIZED);
  });

  it("does not need a key for /healthz", async () => {
    const res = await api("/healthz", { key: null });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
  });

  it("404 for an unknown email id and an unknown route, in the error shape", async () => {
    for (const path of [`/v1/emails/${crypto.randomUUID()}`, "/v1/emails/not-an-id", "/v1/nothing-here"]) {
      const res = await api(path);
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ statusCode: 404, name: "not_found", message: expect.any(String), error: { code: "not_found", message: expect.any(String) } });
    }
  });
});
