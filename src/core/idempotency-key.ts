// The Idempotency-Key header (draft-ietf-httpapi-idempotency-key-header) and the request fingerprint
// that goes with it. The header is a Structured Field string, which clients also send unquoted (Resend's
// SDKs do): both are taken. The fingerprint is the SHA-256 of the body as canonical JSON (object keys
// sorted), so the same request sent with other spacing or key order counts as the same request.

export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

export type ParsedKey = { ok: true; key: string } | { ok: false; message: string };

export function parseIdempotencyKey(header: string): ParsedKey {
  let key = header.trim();
  const quoted = /^"((?:[^"\\]|\\["\\])*)"$/.exec(key);
  if (quoted) key = quoted[1]!.replace(/\\(["\\])/g, "$1");
  if (key.length === 0) return { ok: false, message: "must not be empty" };
  if (key.length > MAX_IDEMPOTENCY_KEY_LENGTH) return { ok: false, message: `must be at most ${MAX_IDEMPOTENCY_KEY_LENGTH} characters` };
  if (!/^[\x20-\x7e]+$/.test(key)) return { ok: false, message: "must be printable ASCII" };
  return { ok: true, key };
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  }
  return value;
}

/** Hex SHA-256 of the body as canonical JSON. */
export async function fingerprintBody(body: unknown): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(canonical(body))));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
