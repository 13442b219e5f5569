// Standard Webhooks signatures (https://www.standardwebhooks.com), as Resend (through Svix) sends them:
// HMAC-SHA256 over "id.timestamp.body" with the secret's bytes (the base64 after "whsec_"), sent as
// "v1,<base64>"; several space-separated while a rotated-out secret is still honoured.

const PREFIX = "whsec_";

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** A new signing secret: "whsec_" and the base64 of 32 random bytes. */
export function newSigningSecret(): string {
  return PREFIX + toBase64(crypto.getRandomValues(new Uint8Array(32)));
}

async function sign(secret: string, content: string): Promise<string> {
  const raw = Uint8Array.from(atob(secret.slice(PREFIX.length)), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(content));
  return `v1,${toBase64(new Uint8Array(mac))}`;
}

/**
 * The headers of one delivery: webhook-id, webhook-timestamp and webhook-signature (what Resend's SDK
 * `webhooks.verify` and the standardwebhooks package read), and the same as svix-* (what receivers written
 * for Resend's Svix deliveries read). `secrets`: the current one first, then any still honoured.
 */
export async function signatureHeaders({ id, timestamp, body, secrets }: { id: string; timestamp: number; body: string; secrets: string[] }): Promise<Record<string, string>> {
  const signed = `${id}.${timestamp}.${body}`;
  const signature = (await Promise.all(secrets.map((s) => sign(s, signed)))).join(" ");
  const seconds = String(timestamp);
  return { "webhook-id": id, "webhook-timestamp": seconds, "webhook-signature": signature, "svix-id": id, "svix-timestamp": seconds, "svix-signature": signature };
}
