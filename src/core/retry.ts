// The retry policy: which SMTP answers are permanent, how long to back off, and when the retry window
// ends. Rule: trouble with the relay (connection, TLS, AUTH, timeouts, any 4xx) is transient; a 5xx answer
// to the message itself (MAIL, RCPT, DATA) is permanent, except the few 5xx that RFC 5321/4954 say are
// about the session, not the message. Transient failures back off exponentially and are retried until
// the message's retry window ends, however many queue redeliveries that takes.
import type { SmtpFailure, SmtpStage } from "../transport/transport";

export interface RetryPolicy {
  baseDelaySeconds: number;
  maxDelaySeconds: number;
  windowSeconds: number;
}

/** Cloudflare Queues delay a message by at most 12 hours. */
export const MAX_QUEUE_DELAY_SECONDS = 43_200;

const MESSAGE_STAGES = new Set<SmtpStage>(["mail", "rcpt", "data", "message"]);
/** 503 bad sequence (our session is out of step), 530 authentication required (relay settings). */
const SESSION_LEVEL_5XX = new Set([503, 530]);

/** base · 2^(attempt−1), capped by the policy and by the queue's longest delay; attempt counts from 1. */
export function backoffSeconds(attempt: number, policy: Pick<RetryPolicy, "baseDelaySeconds" | "maxDelaySeconds">): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  return Math.min(policy.baseDelaySeconds * 2 ** exponent, policy.maxDelaySeconds, MAX_QUEUE_DELAY_SECONDS);
}

/** A positive completion reply (RFC 5321 §4.2.1) accepts a recipient: 250 and 251, and any other 2xx. */
export function isAccepted(reply: { code: number }): boolean {
  return reply.code >= 200 && reply.code < 300;
}

/** Whether an SMTP reply to a command of `stage` refuses the message (or recipient) for good. */
export function isPermanentReply(code: number, stage: SmtpStage): boolean {
  if (code < 500 || !MESSAGE_STAGES.has(stage) || SESSION_LEVEL_5XX.has(code)) return false;
  return !(stage === "rcpt" && code === 552); // "too many recipients": RFC 5321 §4.5.3.1.10 says retry
}

export function isPermanent({ kind, code, stage }: SmtpFailure): boolean {
  if (kind === "content") return true;
  return kind === "reply" && code !== undefined && isPermanentReply(code, stage);
}

/** The reason recorded on the message and in its history: the relay's words, with the command. */
export function describeFailure(failure: SmtpFailure): string {
  return failure.message.slice(0, 1000);
}

/** "72 h", "15 min", "40 s": the window as the history and the README name it. */
export function formatDuration(seconds: number): string {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** When a message's retry window ends: its window starts when it was due (scheduled or accepted). */
export function retryWindowEndsAt(message: { createdAt: string; scheduledAt: string | null }, policy: Pick<RetryPolicy, "windowSeconds">): Date {
  return new Date(Date.parse(message.scheduledAt ?? message.createdAt) + policy.windowSeconds * 1000);
}

export function windowEndedReason(policy: Pick<RetryPolicy, "windowSeconds">, attempts: number, lastError: string | null): string {
  const last = lastError ?? "none recorded";
  return `retry window of ${formatDuration(policy.windowSeconds)} ended after ${attempts} attempt${attempts === 1 ? "" : "s"}; last error: ${last}`.slice(0, 1000);
}
