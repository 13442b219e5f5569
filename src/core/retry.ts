// Decides what one delivery attempt means for the message: sent, try again later, or failed for good.
// Rule: trouble with the relay (connection, TLS, AUTH, timeouts, any 4xx) is transient; a 5xx answer
// to the message itself (MAIL, RCPT, DATA) is permanent, except the few 5xx that RFC 5321/4954 say
// are about the session, not the message. Transient failures back off exponentially.
import type { SmtpAccepted, SmtpFailure, SmtpResult } from "../delivery/smtp";

export type DeliveryOutcome =
  | { kind: "sent"; code: number; detail: string }
  | { kind: "retry"; delaySeconds: number; code?: number; reason: string }
  | { kind: "failed"; code?: number; reason: string };

export interface RetryPolicy {
  baseDelaySeconds: number;
  maxDelaySeconds: number;
}

const MESSAGE_STAGES = new Set(["mail", "rcpt", "data", "message"]);
/** 503 bad sequence (our session is out of step), 530 authentication required (relay settings). */
const SESSION_LEVEL_5XX = new Set([503, 530]);

/** base · 2^(attempt−1), capped; attempt counts from 1. */
export function backoffSeconds(attempt: number, policy: RetryPolicy): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  return Math.min(policy.baseDelaySeconds * 2 ** exponent, policy.maxDelaySeconds);
}

export function isPermanent({ kind, code, stage }: SmtpFailure): boolean {
  if (kind !== "reply" || code === undefined || code < 500 || !MESSAGE_STAGES.has(stage)) return false;
  if (SESSION_LEVEL_5XX.has(code)) return false;
  return !(stage === "rcpt" && code === 552); // "too many recipients": RFC 5321 §4.5.3.1.10 says retry
}

/** What the history records for an accepted mail: the relay's reply, and who it refused, if anyone. */
export function describeAccepted({ reply, rejected }: SmtpAccepted): string {
  if (rejected.length === 0) return reply;
  const refused = rejected.map((r) => `${r.recipient} (${[r.code, r.enhanced_code, r.reply].filter(Boolean).join(" ")})`).join(", ");
  return `${reply}; refused permanently: ${refused}`.slice(0, 1000);
}

/** The reason recorded on the message and in its history: the relay's words, with the command. */
export function describeFailure(failure: SmtpFailure): string {
  return failure.message.slice(0, 1000);
}

export function classifyAttempt(result: SmtpResult<SmtpAccepted>, attempt: number, policy: RetryPolicy): DeliveryOutcome {
  if (result.ok) return { kind: "sent", code: result.value.code, detail: describeAccepted(result.value) };
  const { failure } = result;
  const reason = describeFailure(failure);
  if (isPermanent(failure)) return { kind: "failed", code: failure.code, reason };
  return { kind: "retry", delaySeconds: backoffSeconds(attempt, policy), code: failure.code, reason };
}
