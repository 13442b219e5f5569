// Decides what one delivery attempt means for the message: sent, try again later, or failed for good.
// Rule: trouble with the relay (connection, TLS, AUTH, timeouts, any 4xx) is transient; a 5xx answer
// to the message itself (MAIL, RCPT, DATA) is permanent. Transient failures back off exponentially.
import type { SmtpAccepted, SmtpFailure, SmtpResult } from "../delivery/smtp";

export type DeliveryOutcome =
  | { kind: "sent"; code: number; reply: string }
  | { kind: "retry"; delaySeconds: number; code?: number; reason: string }
  | { kind: "failed"; code?: number; reason: string };

export interface RetryPolicy {
  baseDelaySeconds: number;
  maxDelaySeconds: number;
}

const MESSAGE_STAGES = new Set(["mail", "rcpt", "data", "message"]);

/** base · 2^(attempt−1), capped; attempt counts from 1. */
export function backoffSeconds(attempt: number, policy: RetryPolicy): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  return Math.min(policy.baseDelaySeconds * 2 ** exponent, policy.maxDelaySeconds);
}

export function isPermanent(failure: SmtpFailure): boolean {
  return failure.kind === "reply" && failure.code !== undefined && failure.code >= 500 && MESSAGE_STAGES.has(failure.stage);
}

/** The reason recorded on the message and in its history: the relay's words, with the command. */
export function describeFailure(failure: SmtpFailure): string {
  return failure.message.slice(0, 1000);
}

export function classifyAttempt(result: SmtpResult<SmtpAccepted>, attempt: number, policy: RetryPolicy): DeliveryOutcome {
  if (result.ok) return { kind: "sent", code: result.value.code, reply: result.value.reply };
  const { failure } = result;
  const reason = describeFailure(failure);
  if (isPermanent(failure)) return { kind: "failed", code: failure.code, reason };
  return { kind: "retry", delaySeconds: backoffSeconds(attempt, policy), code: failure.code, reason };
}
