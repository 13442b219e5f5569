// Per-message return paths (VERP): with BOUNCE_ADDRESS set, each message's envelope sender is
// `<local>+<token>@<domain>`, so a bounce that comes back names the message it is about. The token is the
// message's id (16 bytes) and an HMAC-SHA256 of it under BOUNCE_SECRET (the first 10 bytes, 80 bits),
// written in base32 without padding: letters and digits only, which survive relays that lowercase (or
// uppercase) local parts, and 42 characters, so the local part stays under RFC 5321's 64 octets.

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";
const ID_BYTES = 16;
const MAC_BYTES = 10;
export const TOKEN_LENGTH = Math.ceil(((ID_BYTES + MAC_BYTES) * 8) / 5);

function base32(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(buffer << (5 - bits)) & 31];
  return out;
}

/** The bytes of canonical base32: the bits left over after the last byte must be zero (one spelling per token). */
function fromBase32(text: string): Uint8Array | undefined {
  const bytes: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const char of text.toLowerCase()) {
    const value = ALPHABET.indexOf(char);
    if (value < 0) return undefined;
    buffer = ((buffer << 5) | value) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((buffer >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  if ((buffer & ((1 << bits) - 1)) !== 0) return undefined;
  return Uint8Array.from(bytes);
}

const uuidBytes = (id: string) => Uint8Array.from(id.replace(/-/g, "").match(/../g) ?? [], (h) => parseInt(h, 16));
const uuidOf = (bytes: Uint8Array) => {
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};

async function mac(secret: string, id: Uint8Array, purpose = "mailroom return path"): Promise<Uint8Array> {
  // (The full 32 bytes; callers take what they need.)
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const label = new TextEncoder().encode(`${purpose}\0`);
  const signed = new Uint8Array(label.length + id.length);
  signed.set(label);
  signed.set(id, label.length);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, signed));
}

/**
 * The ENVID a message's DSNs carry back (RFC 3461 §4.4): derived from its id under the secret, so it is in no
 * header a recipient sees (the id is, in the Message-ID) and a report that carries it came from the relay's
 * side. 26 characters of base32.
 */
export async function envelopeIdFor(id: string, secret: string): Promise<string> {
  return base32((await mac(secret, uuidBytes(id), "mailroom envelope id")).subarray(0, 16));
}

/** The return path for message `id` (a UUID) under `bounceAddress` (local@domain). */
export async function returnPathFor(id: string, { bounceAddress, secret }: { bounceAddress: string; secret: string }): Promise<string> {
  const at = bounceAddress.lastIndexOf("@");
  const bytes = uuidBytes(id);
  const token = new Uint8Array(ID_BYTES + MAC_BYTES);
  token.set(bytes);
  token.set((await mac(secret, bytes)).subarray(0, MAC_BYTES), ID_BYTES);
  return `${bounceAddress.slice(0, at)}+${base32(token)}@${bounceAddress.slice(at + 1)}`;
}

export type ReturnPathCheck = { ok: true; messageId: string } | { ok: false; reason: "not_the_bounce_address" | "no_token" | "malformed_token" | "forged_token" };

/**
 * Which message a mail to `recipient` is about: the recipient must be the bounce address with a token
 * (local part and domain compared without case), and the token's MAC must verify, in constant time.
 */
export async function readReturnPath(recipient: string, { bounceAddress, secret }: { bounceAddress: string; secret: string }): Promise<ReturnPathCheck> {
  const at = recipient.lastIndexOf("@");
  const bounceAt = bounceAddress.lastIndexOf("@");
  const [local, domain] = [recipient.slice(0, at).toLowerCase(), recipient.slice(at + 1).toLowerCase()];
  const [bounceLocal, bounceDomain] = [bounceAddress.slice(0, bounceAt).toLowerCase(), bounceAddress.slice(bounceAt + 1).toLowerCase()];
  if (at < 0 || domain !== bounceDomain || !(local === bounceLocal || local.startsWith(`${bounceLocal}+`))) return { ok: false, reason: "not_the_bounce_address" };
  if (local === bounceLocal) return { ok: false, reason: "no_token" };
  const text = local.slice(bounceLocal.length + 1);
  const token = text.length === TOKEN_LENGTH ? fromBase32(text) : undefined;
  if (!token || token.length !== ID_BYTES + MAC_BYTES) return { ok: false, reason: "malformed_token" };
  const id = token.subarray(0, ID_BYTES);
  const expected = await mac(secret, id);
  let difference = 0;
  for (let i = 0; i < MAC_BYTES; i++) difference |= expected[i]! ^ token[ID_BYTES + i]!;
  return difference === 0 ? { ok: true, messageId: uuidOf(id) } : { ok: false, reason: "forged_token" };
}
