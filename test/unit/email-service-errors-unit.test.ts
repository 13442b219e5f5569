// The table that maps Cloudflare Email Service's refusals onto SMTP terms, and what the retry policy
// then makes of each: every documented E_* code, the local binding's texts, and anything else.
import { describe, expect, it } from "vitest";
import { isPermanentReply } from "../../src/core/retry";
import { classifyEmailServiceError, EMAIL_SERVICE_ERRORS } from "../../src/transport/cloudflare/errors";

const withCode = (code: string, message = "refused") => Object.assign(new Error(message), { code });
const STAGE = { recipient: "rcpt", message: "data", service: "mail" } as const;

describe("Email Service refusals", () => {
  it.each([
    // code, reply, status, scope, permanent
    ["E_RECIPIENT_NOT_ALLOWED", 550, "5.7.1", "recipient", true],
    ["E_RECIPIENT_SUPPRESSED", 550, "5.7.1", "recipient", true],
    ["E_DELIVERY_FAILED", 451, "4.4.0", "recipient", false],
    ["E_VALIDATION_ERROR", 554, "5.6.0", "recipient", true],
    ["E_FIELD_MISSING", 554, "5.6.0", "recipient", true],
    ["E_TOO_MANY_RECIPIENTS", 554, "5.5.3", "message", true],
    ["E_TOO_MANY_ATTACHMENTS", 554, "5.3.4", "message", true],
    ["E_CONTENT_TOO_LARGE", 554, "5.3.4", "message", true],
    ["E_HEADER_NOT_ALLOWED", 554, "5.6.0", "message", true],
    ["E_HEADER_USE_API_FIELD", 554, "5.6.0", "message", true],
    ["E_HEADER_VALUE_INVALID", 554, "5.6.0", "message", true],
    ["E_HEADER_VALUE_TOO_LONG", 554, "5.6.0", "message", true],
    ["E_HEADER_NAME_INVALID", 554, "5.6.0", "message", true],
    ["E_HEADERS_TOO_LARGE", 554, "5.6.0", "message", true],
    ["E_HEADERS_TOO_MANY", 554, "5.6.0", "message", true],
    ["E_SENDER_NOT_VERIFIED", 451, "4.7.1", "service", false],
    ["E_SENDER_DOMAIN_NOT_AVAILABLE", 451, "4.7.1", "service", false],
    ["E_RATE_LIMIT_EXCEEDED", 451, "4.7.0", "service", false],
    ["E_DAILY_LIMIT_EXCEEDED", 451, "4.7.0", "service", false],
    ["E_INTERNAL_SERVER_ERROR", 451, "4.3.0", "service", false],
  ] as const)("%s is %i %s, about the %s (permanent: %s)", (error, code, enhancedCode, scope, permanent) => {
    expect(classifyEmailServiceError(withCode(error))).toEqual({ error, code, enhancedCode, scope });
    expect(isPermanentReply(code, STAGE[scope])).toBe(permanent);
  });

  it("covers every code it knows in the table above", () => {
    expect(Object.keys(EMAIL_SERVICE_ERRORS)).toHaveLength(20);
  });

  it.each([
    ["email to bob@example.com not allowed", "E_RECIPIENT_NOT_ALLOWED"],
    ["email from noreply@mailroom.test not allowed", "E_SENDER_NOT_VERIFIED"],
    ["could not parse email: Unexpected end", "E_VALIDATION_ERROR"],
    ["invalid message-id", "E_VALIDATION_ERROR"],
    ["invalid headers set", "E_VALIDATION_ERROR"],
    ["From: header does not match mail from", "E_VALIDATION_ERROR"],
  ])("reads the local binding's %j as %s", (message, error) => {
    expect(classifyEmailServiceError(new Error(message)).error).toBe(error);
  });

  it("trusts the code over the text", () => {
    expect(classifyEmailServiceError(withCode("E_RATE_LIMIT_EXCEEDED", "email to bob@example.com not allowed")).error).toBe("E_RATE_LIMIT_EXCEEDED");
  });

  it("takes what it does not know for trouble with the service: transient, and nothing more goes out now", () => {
    for (const error of [new Error("Network connection lost."), withCode("E_SOMETHING_NEW"), "a string", null, withCode("toString")]) {
      expect(classifyEmailServiceError(error)).toMatchObject({ code: 451, enhancedCode: "4.3.0", scope: "service" });
    }
    expect(classifyEmailServiceError(withCode("E_SOMETHING_NEW")).error).toBe("E_SOMETHING_NEW");
    expect(classifyEmailServiceError(new Error("x")).error).toBe("unknown");
    // Texts match whole, not somewhere inside.
    expect(classifyEmailServiceError(new Error("proxy said: email to x not allowed, retry")).error).toBe("unknown");
  });
});
