// Cases the transport seam's own tests left open, found by mutating its code: the local binding's texts
// are matched whole (a message that only mentions them is trouble with the service, not a refusal), an
// error whose `code` is not a string is no E_* code, and TRANSPORT's raw reading (the one that decides
// whether SMTP_HOST is required even when other settings are wrong) normalizes names as the schema does.
import { describe, expect, it } from "vitest";
import { classifyEmailServiceError } from "../../src/transport/cloudflare/errors";
import { configProblems } from "../helpers/config";

const KEY_HASH = "62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef";
const NO_RELAY = { MAIL_FROM: "Acme <noreply@acme.example>", API_KEYS: `web:${KEY_HASH}` };
/** What parseConfig checks of the send_email binding: that it can send. */
const EMAIL = { send: async () => ({ messageId: "<x@acme.example>" }) };

const problems = configProblems;

describe("the local binding's texts", () => {
  it.each([
    // Begins like a refusal of the recipient or of the sender, but is not one.
    "email to bob@example.com could not be handed on",
    "email from noreply@mailroom.test was queued, then lost",
    // Ends like one, but says it somewhere inside another message.
    "upstream: email to bob@example.com not allowed",
    "upstream: email from noreply@mailroom.test not allowed",
  ])("takes %j for trouble with the service, not a refusal", (text) => {
    expect(classifyEmailServiceError(new Error(text))).toEqual({ error: "unknown", code: 451, enhancedCode: "4.3.0", scope: "service" });
  });
});

describe("an error's code", () => {
  it("is an E_* code only when it is a string: a numeric or object code is unknown trouble", () => {
    for (const code of [5, { name: "E_RATE_LIMIT_EXCEEDED" }, true]) {
      expect(classifyEmailServiceError(Object.assign(new Error("socket hang up"), { code }))).toEqual({ error: "unknown", code: 451, enhancedCode: "4.3.0", scope: "service" });
    }
    // And a text the local binding uses still counts when such a code comes with it.
    expect(classifyEmailServiceError(Object.assign(new Error("email to bob@example.com not allowed"), { code: 1 })).error).toBe("E_RECIPIENT_NOT_ALLOWED");
  });
});

describe("SMTP_HOST, required when TRANSPORT lists smtp", () => {
  it.each([
    ["an empty TRANSPORT (the default, smtp)", ""],
    ["smtp written in capitals", "SMTP,cloudflare"],
    ["smtp with spaces around it", " smtp , cloudflare"],
  ])("is required with %s, and nothing else is said", (_what, TRANSPORT) => {
    expect(problems({ ...NO_RELAY, EMAIL, TRANSPORT })).toEqual(["SMTP_HOST: required"]);
    expect(problems({ ...NO_RELAY, EMAIL, TRANSPORT, SMTP_HOST: "" })).toEqual(["SMTP_HOST: required"]);
    // A var left null (as a wrangler.jsonc may have it) is no host either.
    expect(problems({ ...NO_RELAY, EMAIL, TRANSPORT, SMTP_HOST: null })).toEqual(["SMTP_HOST: required"]);
  });

  it.each([
    ["an empty TRANSPORT", ""],
    ["smtp written in capitals", "SMTP,cloudflare"],
    ["smtp with spaces around it", " smtp , cloudflare"],
  ])("is said first with %s when other settings are wrong too", (_what, TRANSPORT) => {
    expect(problems({ ...NO_RELAY, API_KEYS: "nope", EMAIL, TRANSPORT })[0]).toBe("SMTP_HOST: required");
  });
});
