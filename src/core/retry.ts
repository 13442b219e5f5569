// Decides what one delivery attempt means for the message: sent, try again later, or failed for good.
// Rule: trouble with the relay (connection, TLS, AUTH, timeouts, any 4xx) is transient; a 5xx answer
// to the message itself (MAIL, RCPT, DATA) is permanent, except the few 5xx that RFC 5321/4954 say
// are about the session, not the message. Transient failures back off exponentially and are retried
// until the message's retry window ends, however many queue redeliveries that takes.
import type { SmtpAccepted, SmtpFailure, SmtpResult, SmtpStage } from "../delivery/smtp";

export type DeliveryOutcome =
  | { kind: "sent"; code: number; detail: string }
  | { kind: "retry"; delaySeconds: number; code?: number; reason: string }
  | { kind: "failed"; code?: number; reason: string };

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

/** Whether an SMTP reply to a command of `stage` refuses the message (or recipient) for good. */
export function isPermanentReply(code: number, stage: SmtpStage): boolean {
  if (code < 500 || !MESSAGE_STAGES.has(stage) || SESSION_LEVEL_5XX.has(code)) return false;
  return !(stage === "rcpt" && code === 552); // "too many recipients": RFC 5321 §4.5.3.1.10 says retry
}

export function isPermanent({ kind, code, stage }: SmtpFailure): boolean {
  return kind === "reply" && code !== undefined && isPermanentReply(code, stage);
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

export interface AttemptContext {
  attempt: number;
  now: Date;
  windowEndsAt: Date;
  policy: RetryPolicy;
}

export function classifyAttempt(result: SmtpResult<SmtpAccepted>, { attempt, now, windowEndsAt, policy }: AttemptContext): DeliveryOutcome {
  if (result.ok) return { kind: "sent", code: result.value.code, detail: describeAccepted(result.value) };
  const { failure } = result;
  const reason = describeFailure(failure);
  if (isPermanent(failure)) return { kind: "failed", code: failure.code, reason };
  const secondsLeft = Math.floor((windowEndsAt.getTime() - now.getTime()) / 1000);
  if (secondsLeft <= 0) return { kind: "failed", code: failure.code, reason: windowEndedReason(policy, attempt, reason) };
  // The last retry lands when the window ends, not after it.
  return { kind: "retry", delaySeconds: Math.min(backoffSeconds(attempt, policy), secondsLeft), code: failure.code, reason };
}
