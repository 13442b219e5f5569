// Return-path tokens: they name the message, verify only with the secret, survive a relay that changes the
// case of the local part, and say why when they do not verify.
import { describe, expect, it } from "vitest";
import { envelopeIdFor, readReturnPath, returnPathFor, TOKEN_LENGTH } from "../../src/core/return-path";

const bounce = { bounceAddress: "bounces@mail.acme.example", secret: "s".repeat(32) };
const id = "6f1c2f0e-8a7b-4f7e-9a53-2f4f2f3b8f11";

describe("return paths", () => {
  it("name the message under the bounce address, in 42 characters of lower-case base32", async () => {
    const path = await returnPathFor(id, bounce);
    expect(TOKEN_LENGTH).toBe(42);
    expect(path).toMatch(/^bounces\+[a-z2-7]{42}@mail\.acme\.example$/);
    expect(path.split("@")[0]!.length).toBeLessThanOrEqual(64);
    expect(await readReturnPath(path, bounce)).toEqual({ ok: true, messageId: id });
    expect(await returnPathFor(id, bounce)).toBe(path);
    expect(await returnPathFor("00000000-0000-4000-8000-000000000000", bounce)).not.toBe(path);
  });

  it("still verify when a relay upper- or lower-cases the address", async () => {
    const path = await returnPathFor(id, bounce);
    expect(await readReturnPath(path.toUpperCase(), bounce)).toEqual({ ok: true, messageId: id });
    expect(await readReturnPath(path.toLowerCase(), { ...bounce, bounceAddress: "Bounces@Mail.ACME.example" })).toEqual({ ok: true, messageId: id });
  });

  it("refuse forged, foreign, truncated and tokenless addresses, saying which", async () => {
    const path = await returnPathFor(id, bounce);
    const [local, domain] = path.split("@") as [string, string];
    const token = local.slice("bounces+".length);
    const flipped = token.slice(0, 30) + (token[30] === "a" ? "b" : "a") + token.slice(31);
    expect(await readReturnPath(`bounces+${flipped}@${domain}`, bounce)).toEqual({ ok: false, reason: "forged_token" });
    expect(await readReturnPath(path, { ...bounce, secret: "t".repeat(32) })).toEqual({ ok: false, reason: "forged_token" });
    expect(await readReturnPath(`bounces+${token}@other.example`, bounce)).toEqual({ ok: false, reason: "not_the_bounce_address" });
    expect(await readReturnPath(`postmaster@${domain}`, bounce)).toEqual({ ok: false, reason: "not_the_bounce_address" });
    expect(await readReturnPath(`bouncesx+${token}@${domain}`, bounce)).toEqual({ ok: false, reason: "not_the_bounce_address" });
    expect(await readReturnPath(`bounces@${domain}`, bounce)).toEqual({ ok: false, reason: "no_token" });
    expect(await readReturnPath(`bounces+${token.slice(1)}@${domain}`, bounce)).toEqual({ ok: false, reason: "malformed_token" });
    expect(await readReturnPath(`bounces+${token.slice(0, -1)}1@${domain}`, bounce)).toEqual({ ok: false, reason: "malformed_token" });
    // The last character carries 3 bits of the token and 2 that must be zero: a second spelling is refused.
    const last = "abcdefghijklmnopqrstuvwxyz234567".indexOf(token.at(-1)!);
    const respelled = token.slice(0, -1) + "abcdefghijklmnopqrstuvwxyz234567"[last ^ 1];
    expect(await readReturnPath(`bounces+${respelled}@${domain}`, bounce)).toEqual({ ok: false, reason: "malformed_token" });
    expect(await readReturnPath("no-at-sign", bounce)).toEqual({ ok: false, reason: "not_the_bounce_address" });
  });

  it("derive the envelope id from the message's id under the secret: not the id, not the token", async () => {
    const envid = await envelopeIdFor(id, bounce.secret);
    expect(envid).toMatch(/^[a-z2-7]{26}$/);
    expect(envid).toBe(await envelopeIdFor(id, bounce.secret));
    expect(envid).not.toBe(await envelopeIdFor(id, "t".repeat(32)));
    expect(await returnPathFor(id, bounce)).not.toContain(envid);
    expect(envid).not.toContain(id.replace(/-/g, "").slice(0, 8));
  });
});
