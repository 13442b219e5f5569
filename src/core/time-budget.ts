// How long one queue consumer invocation may keep delivering. Cloudflare ends an invocation after 15
// minutes of wall-clock time and redelivers whatever it had not settled, so the consumer starts no new
// SMTP transaction late in its allowance, and no attempt waits on the relay past its own claim.

/** Cloudflare ends a queue consumer invocation after 15 minutes of wall-clock time. */
export const INVOCATION_LIMIT_MS = 15 * 60_000;

export interface TimeBudget {
  /** Epoch ms after which the invocation starts no new transaction (it always starts one). */
  startsNoneAfter: number;
  /** The epoch ms by which an attempt claimed at `claimedAt` must stop waiting on the relay. */
  attemptDeadline(claimedAt: number): number;
  /** The epoch ms until which it may keep trying to record its outcome: just before its claim ends. */
  recordBy(claimedAt: number): number;
}

/**
 * The allowance is the shorter of the invocation limit and the claim's lease, less a margin kept for
 * recording the outcome. New transactions start only until two thirds of the allowance remain, so the
 * last one still has 10 of the 15 minutes by default: RFC 5321's wait for the reply to the final dot.
 */
export function createTimeBudget(startedAt: number, leaseSeconds: number): TimeBudget {
  const leaseMs = leaseSeconds * 1000;
  const allowanceMs = Math.min(leaseMs, INVOCATION_LIMIT_MS);
  const marginMs = recordingMarginMs(leaseSeconds);
  return {
    startsNoneAfter: startedAt + allowanceMs / 3 - marginMs,
    attemptDeadline: (claimedAt) => Math.min(claimedAt + leaseMs, startedAt + INVOCATION_LIMIT_MS) - marginMs,
    recordBy: (claimedAt) => Math.min(claimedAt + leaseMs, startedAt + INVOCATION_LIMIT_MS) - 1000,
  };
}

/** Kept back from an attempt's time for recording its outcome. */
const recordingMarginMs = (leaseSeconds: number) => Math.min(30_000, Math.min(leaseSeconds * 1000, INVOCATION_LIMIT_MS) / 5);

/** The longest a freshly claimed attempt may wait on the relay: its lease (or the invocation's limit) less the margin. */
export function attemptAllowanceMs(leaseSeconds: number): number {
  return Math.min(leaseSeconds * 1000, INVOCATION_LIMIT_MS) - recordingMarginMs(leaseSeconds);
}
