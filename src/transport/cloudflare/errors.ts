// What Cloudflare Email Service's refusals mean for a mail, in the SMTP terms the retry policy and the
// history speak: each E_* code (the `code` of the error send() throws) maps to a reply code, an RFC 3463
// status and a scope — the recipient ("recipient"), the message itself ("message": every recipient would
// be refused the same) or the service ("service": nothing more can go out now, so the session stops). The
// local binding of `wrangler dev` throws plain errors without a code; their texts map the same way.
// Refusals of the sender (not verified, domain not onboarded) are settings to fix, so they are transient:
// the mail waits for the fix, as it does for a relay that refuses AUTH.

export type RefusalScope = "recipient" | "message" | "service";

export interface EmailServiceRefusal {
  /** The E_* code, or the local binding's equivalent. */
  error: string;
  code: number;
  enhancedCode: string;
  scope: RefusalScope;
}

type Meaning = Omit<EmailServiceRefusal, "error">;

const RECIPIENT_REFUSED: Meaning = { code: 550, enhancedCode: "5.7.1", scope: "recipient" };
const CONTENT_REFUSED: Meaning = { code: 554, enhancedCode: "5.6.0", scope: "message" };
const SENDER_NOT_READY: Meaning = { code: 451, enhancedCode: "4.7.1", scope: "service" };
const SERVICE_LIMIT: Meaning = { code: 451, enhancedCode: "4.7.0", scope: "service" };
const SERVICE_TROUBLE: Meaning = { code: 451, enhancedCode: "4.3.0", scope: "service" };

/** https://developers.cloudflare.com/email-service/ (error codes of the Workers API). */
export const EMAIL_SERVICE_ERRORS: Record<string, Meaning> = {
  E_RECIPIENT_NOT_ALLOWED: RECIPIENT_REFUSED,
  // Email Service's own suppression list (an earlier bounce or complaint there): refused for good.
  E_RECIPIENT_SUPPRESSED: RECIPIENT_REFUSED,
  E_DELIVERY_FAILED: { code: 451, enhancedCode: "4.4.0", scope: "recipient" },
  // Possibly about this recipient's address only: each recipient gets its own answer.
  E_VALIDATION_ERROR: { code: 554, enhancedCode: "5.6.0", scope: "recipient" },
  E_FIELD_MISSING: { code: 554, enhancedCode: "5.6.0", scope: "recipient" },
  // Mailroom gives the binding one recipient at a time, so this is about the message's own headers.
  E_TOO_MANY_RECIPIENTS: { code: 554, enhancedCode: "5.5.3", scope: "message" },
  E_TOO_MANY_ATTACHMENTS: { code: 554, enhancedCode: "5.3.4", scope: "message" },
  // 554, not 552: a refusal after another recipient got the mail is recorded as this recipient's, and a 552
  // there means "too many recipients, try again" (RFC 5321 §4.5.3.1.10).
  E_CONTENT_TOO_LARGE: { code: 554, enhancedCode: "5.3.4", scope: "message" },
  E_HEADER_NOT_ALLOWED: CONTENT_REFUSED,
  E_HEADER_USE_API_FIELD: CONTENT_REFUSED,
  E_HEADER_VALUE_INVALID: CONTENT_REFUSED,
  E_HEADER_VALUE_TOO_LONG: CONTENT_REFUSED,
  E_HEADER_NAME_INVALID: CONTENT_REFUSED,
  E_HEADERS_TOO_LARGE: CONTENT_REFUSED,
  E_HEADERS_TOO_MANY: CONTENT_REFUSED,
  E_SENDER_NOT_VERIFIED: SENDER_NOT_READY,
  E_SENDER_DOMAIN_NOT_AVAILABLE: SENDER_NOT_READY,
  E_RATE_LIMIT_EXCEEDED: SERVICE_LIMIT,
  E_DAILY_LIMIT_EXCEEDED: SERVICE_LIMIT,
  E_INTERNAL_SERVER_ERROR: SERVICE_TROUBLE,
};

/** The local binding's texts (miniflare's send_email), checked in order. */
const LOCAL_TEXTS: [test: (text: string) => boolean, error: string][] = [
  [(t) => t.startsWith("email to ") && t.endsWith(" not allowed"), "E_RECIPIENT_NOT_ALLOWED"],
  [(t) => t.startsWith("email from ") && t.endsWith(" not allowed"), "E_SENDER_NOT_VERIFIED"],
  [(t) => t.startsWith("could not parse email") || t === "invalid message-id" || t === "invalid headers set" || t === "From: header does not match mail from", "E_VALIDATION_ERROR"],
];

/** What an error thrown by send() means; one with neither a known code nor a known text is trouble with the service: transient. */
export function classifyEmailServiceError(error: unknown): EmailServiceRefusal {
  const code = typeof (error as { code?: unknown } | null)?.code === "string" ? (error as { code: string }).code : undefined;
  if (code && Object.hasOwn(EMAIL_SERVICE_ERRORS, code)) return { error: code, ...EMAIL_SERVICE_ERRORS[code]! };
  const text = error instanceof Error ? error.message : String(error);
  const local = LOCAL_TEXTS.find(([test]) => test(text))?.[1];
  if (local) return { error: local, ...EMAIL_SERVICE_ERRORS[local]! };
  return { error: code ?? "unknown", ...SERVICE_TROUBLE };
}
