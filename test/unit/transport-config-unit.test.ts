// TRANSPORT: which ways out, in which order, and what each needs.
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config";
import { configProblems } from "../helpers/config";

const KEY_HASH = "62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef";
const base = { SMTP_HOST: "smtp.relay.example", MAIL_FROM: "Acme <noreply@acme.example>", API_KEYS: `web:${KEY_HASH}` };
/** What parseConfig checks of the send_email binding: that it can send. */
const EMAIL = { send: async () => ({ messageId: "<x@acme.example>" }) };

const problems = configProblems;

describe("TRANSPORT", () => {
  it("is smtp unless set, and an empty value is unset", () => {
    expect(parseConfig(base).transports).toEqual(["smtp"]);
    expect(parseConfig({ ...base, TRANSPORT: "" }).transports).toEqual(["smtp"]);
  });

  it("reads an ordered list, spaces and case aside", () => {
    expect(parseConfig({ ...base, EMAIL, TRANSPORT: " SMTP , cloudflare" }).transports).toEqual(["smtp", "cloudflare"]);
    expect(parseConfig({ ...base, EMAIL, TRANSPORT: "cloudflare" }).transports).toEqual(["cloudflare"]);
  });

  it("needs no relay without smtp, and then has none", () => {
    const config = parseConfig({ MAIL_FROM: base.MAIL_FROM, API_KEYS: base.API_KEYS, EMAIL, TRANSPORT: "cloudflare" });
    expect(config.smtp).toBeUndefined();
    expect(problems({ MAIL_FROM: base.MAIL_FROM, API_KEYS: base.API_KEYS, EMAIL, TRANSPORT: "cloudflare", SMTP_HOST: "" })).toEqual([]);
  });

  it("needs SMTP_HOST whenever smtp is listed, said first even when other settings are wrong", () => {
    expect(problems({ MAIL_FROM: base.MAIL_FROM, API_KEYS: base.API_KEYS, EMAIL, TRANSPORT: "smtp,cloudflare" })).toEqual(["SMTP_HOST: required"]);
    expect(problems({ MAIL_FROM: base.MAIL_FROM, API_KEYS: "nope" })[0]).toBe("SMTP_HOST: required");
    expect(problems({ MAIL_FROM: base.MAIL_FROM, API_KEYS: "nope", TRANSPORT: "cloudflare" })).not.toContain("SMTP_HOST: required");
  });

  it("needs the EMAIL binding for cloudflare", () => {
    expect(problems({ ...base, TRANSPORT: "smtp,cloudflare" })).toEqual(['TRANSPORT: cloudflare needs the send_email binding named EMAIL ([[send_email]] name = "EMAIL" in wrangler.toml)']);
    expect(problems({ ...base, TRANSPORT: "cloudflare", EMAIL: {} })).toHaveLength(1);
    // Not needed without cloudflare.
    expect(problems({ ...base, TRANSPORT: "smtp" })).toEqual([]);
  });

  it.each([
    ["an unknown name", "smtp,ses", "TRANSPORT.1: must be smtp, cloudflare, or both in order (smtp,cloudflare)"],
    ["a name twice", "smtp,smtp", "TRANSPORT: names a transport twice"],
    ["cloudflare before smtp", "cloudflare,smtp", "TRANSPORT: cloudflare must come last"],
    ["an empty entry", "smtp,", "TRANSPORT.1: must be smtp, cloudflare, or both in order (smtp,cloudflare)"],
  ])("refuses %s", (_name, value, problem) => {
    const found = problems({ ...base, EMAIL, TRANSPORT: value });
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(problem);
  });

  it("checks SMTP_SECURITY=none against a loopback host only when there is a relay", () => {
    expect(problems({ ...base, SMTP_SECURITY: "none" })).toEqual(["SMTP_SECURITY: none is only allowed for loopback hosts (localhost, 127.0.0.1, ::1)"]);
    expect(problems({ MAIL_FROM: base.MAIL_FROM, API_KEYS: base.API_KEYS, EMAIL, TRANSPORT: "cloudflare", SMTP_SECURITY: "none" })).toEqual([]);
  });
});
