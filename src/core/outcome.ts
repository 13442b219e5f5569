// What one delivery attempt means for each recipient and for the message. A recipient the relay accepted
// is done and never sent the mail again; one the relay refused for good is done ("bounced"); one refused
// temporarily, or not reached because the session failed, waits for the next attempt until the retry
// window ends, and is then given up on ("failed", as is one whose mail could not be sent at all). The
// message is settled once every recipient is: "sent" when the relay took it for at least one, else "failed".
import type { SmtpTransaction } from "../transport/transport";
import { backoffSeconds, describeFailure, isAccepted, isPermanent, isPermanentReply, windowEndedReason, type RetryPolicy } from "./retry";

/** delivered and complained come only from reports that come back later (see store/reports.ts). */
export type RecipientStatus = "pending" | "sent" | "deferred" | "bounced" | "delivered" | "complained" | "suppressed" | "failed";

export interface RecipientUpdate {
  address: string;
  status: Exclude<RecipientStatus, "pending">;
  smtpCode?: number;
  /** The RFC 3463 status the reply carried (5.1.1), when it had one. */
  enhancedCode?: string;
  detail: string;
}

/** A refusal for good by the relay of the mail to its recipients (RCPT, DATA, the final dot), not of the sender or the session. */
const BOUNCING_STAGES = new Set(["rcpt", "data", "message"]);

export type DeliveryOutcome =
  | { kind: "sent"; code?: number; detail: string; recipients: RecipientUpdate[] }
  | { kind: "retry"; delaySeconds: number; code?: number; reason: string; recipients: RecipientUpdate[] }
  | { kind: "failed"; code?: number; reason: string; recipients: RecipientUpdate[] };

export interface AttemptContext {
  attempt: number;
  now: Date;
  windowEndsAt: Date;
  policy: RetryPolicy;
  /** The recipients this attempt tried: those pending or deferred before it. */
  attempted: string[];
  /** Whether an earlier attempt already delivered the message to some recipient. */
  sentBefore: boolean;
  /** Waiting recipients on the key's suppression list: not tried (not in `attempted`), settled as suppressed. */
  suppressed?: { address: string; origin: string }[];
}

/** How the relay's answers settle one recipient; undefined when the attempt never reached it and may retry. */
function recipientOutcome(address: string, { recipients, end }: SmtpTransaction): RecipientUpdate | undefined {
  const rcpt = recipients.find((r) => r.recipient === address);
  if (rcpt && !isAccepted(rcpt)) {
    const detail = `${rcpt.command} answered ${[rcpt.code, rcpt.enhanced_code, rcpt.reply].filter(Boolean).join(" ")}`.slice(0, 1000);
    return { address, status: isPermanentReply(rcpt.code, "rcpt") ? "bounced" : "deferred", smtpCode: rcpt.code, ...enhanced(rcpt.enhanced_code), detail };
  }
  if (end.ok) return rcpt ? { address, status: "sent", smtpCode: end.value.code, detail: end.value.reply } : undefined;
  const { failure } = end;
  if (isPermanent(failure)) {
    const bounced = failure.kind === "reply" && BOUNCING_STAGES.has(failure.stage);
    return { address, status: bounced ? "bounced" : "failed", smtpCode: failure.code, ...enhanced(failure.enhanced_code), detail: describeFailure(failure) };
  }
  return rcpt ? { address, status: "deferred", smtpCode: failure.code, ...enhanced(failure.enhanced_code), detail: describeFailure(failure) } : undefined;
}

const enhanced = (code: string | undefined) => (code ? { enhancedCode: code } : {});

/** "queued as 7; not delivered to gone@example.com (RCPT TO:<…> answered 550 …)": what a settling attempt records. */
function describeSettled(transaction: SmtpTransaction, updates: RecipientUpdate[]): string {
  const failed = updates.filter((u) => u.status === "failed" || u.status === "bounced").map((u) => `${u.address} (${u.detail})`);
  const accepted = transaction.end.ok ? transaction.end.value.reply : "every recipient is settled";
  return (failed.length ? `${accepted}; not delivered to ${failed.join(", ")}` : accepted).slice(0, 1000);
}

export function classifyAttempt(transaction: SmtpTransaction, context: AttemptContext): DeliveryOutcome {
  const { attempt, now, windowEndsAt, policy, attempted, sentBefore, suppressed = [] } = context;
  const skipped = suppressed.map(({ address, origin }): RecipientUpdate => ({ address, status: "suppressed", detail: `not sent: the address is on the suppression list (${origin})` }));
  if (attempted.length === 0 && skipped.length > 0 && !sentBefore) {
    return { kind: "failed", reason: "not sent: every recipient is on the suppression list; nothing went to the relay", recipients: skipped };
  }
  const recipients = [...skipped, ...attempted.map((address) => recipientOutcome(address, transaction)).filter((u): u is RecipientUpdate => u !== undefined)];
  const settledAddresses = new Set(recipients.filter((u) => u.status !== "deferred").map((u) => u.address));
  const waiting = attempted.filter((address) => !settledAddresses.has(address));
  const anySent = sentBefore || recipients.some((u) => u.status === "sent");
  const { end } = transaction;

  if (waiting.length === 0) {
    if (anySent) return { kind: "sent", code: end.ok ? end.value.code : undefined, detail: describeSettled(transaction, recipients), recipients };
    // Nobody took it and nobody will: the failure that ended the transaction says why.
    const failure = end.ok ? undefined : end.failure;
    return { kind: "failed", code: failure?.code, reason: failure ? describeFailure(failure) : describeSettled(transaction, recipients), recipients };
  }

  // Someone still waits: the reason is what ended the transaction, or else the first temporary refusal.
  const deferred = recipients.find((u) => u.status === "deferred");
  const code = end.ok ? deferred?.smtpCode : end.failure.code;
  const reason = end.ok ? (deferred?.detail ?? "") : describeFailure(end.failure);
  const secondsLeft = Math.floor((windowEndsAt.getTime() - now.getTime()) / 1000);
  if (secondsLeft > 0) {
    // The last retry lands when the window ends, not after it.
    return { kind: "retry", delaySeconds: Math.min(backoffSeconds(attempt, policy), secondsLeft), code, reason, recipients };
  }
  const ended = windowEndedReason(policy, attempt, reason);
  const closed = [
    ...recipients.filter((u) => u.status !== "deferred"),
    ...waiting.map((address): RecipientUpdate => ({ address, status: "failed", smtpCode: recipients.find((u) => u.address === address)?.smtpCode ?? code, detail: ended })),
  ];
  if (anySent) return { kind: "sent", code: end.ok ? end.value.code : undefined, detail: describeSettled(transaction, closed), recipients: closed };
  return { kind: "failed", code, reason: ended, recipients: closed };
}
