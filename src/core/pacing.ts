// What pacing the relay means, without the Durable Object around it: a connection semaphore whose
// leases expire (an invocation that dies while holding one frees it when the lease ends), and a send
// schedule (GCRA: each message gets the next free slot, 1/rate apart, so no second holds more than the
// rate) that a throttling answer from the relay slows for everyone. Times are epoch ms, given by the caller.

/** After a throttling answer the rate recovers one step (it doubles) per this many ms without another. */
export const RECOVERY_STEP_MS = 10_000;
/** A throttling answer halves the rate, down to this fraction of SMTP_MAX_PER_SECOND at most. */
export const SLOWEST_FACTOR = 1 / 16;
/** And holds every send back for this long. */
export const THROTTLE_PAUSE_MS = 1000;

export interface ConnectionLeases {
  /** Lease id → when it expires. */
  leases: Record<string, number>;
}

/** The leases still running at `now`. */
export function liveLeases(state: ConnectionLeases, now: number): ConnectionLeases {
  return { leases: Object.fromEntries(Object.entries(state.leases).filter(([, expiresAt]) => expiresAt > now)) };
}

/** Whether one more connection fits under `max` at `now`. */
export function hasRoom(state: ConnectionLeases, max: number, now: number): boolean {
  return Object.keys(liveLeases(state, now).leases).length < max;
}

/** When the next lease ends (and a waiter may get its place); undefined: none runs. */
export function nextExpiry(state: ConnectionLeases, now: number): number | undefined {
  const ends = Object.values(liveLeases(state, now).leases);
  return ends.length > 0 ? Math.min(...ends) : undefined;
}

export interface SendSchedule {
  /** GCRA's theoretical arrival time: the earliest the next message may go. */
  nextSlotAt: number;
  /** The rate's fraction after the last throttling answer (1: the full rate), and when that came. */
  factor: number;
  throttledAt: number;
}

export const FRESH_SCHEDULE: SendSchedule = { nextSlotAt: 0, factor: 1, throttledAt: 0 };

/** The fraction of the rate in force at `now`: a throttling answer's halving, recovered a step per RECOVERY_STEP_MS. */
export function factorAt(schedule: SendSchedule, now: number): number {
  const steps = Math.floor(Math.max(0, now - schedule.throttledAt) / RECOVERY_STEP_MS);
  return Math.min(1, schedule.factor * 2 ** Math.min(steps, 30));
}

/**
 * Slots for `count` messages at `perSecond`: the times they may go (each 1/rate after the one before, none
 * before `now`), and the schedule after them.
 */
export function reserveSlots(schedule: SendSchedule, perSecond: number, count: number, now: number): { at: number[]; schedule: SendSchedule } {
  const intervalMs = 1000 / (perSecond * factorAt(schedule, now));
  const at: number[] = [];
  let next = Math.max(now, schedule.nextSlotAt);
  for (let i = 0; i < count; i++) {
    at.push(next);
    next += intervalMs;
  }
  return { at, schedule: { ...schedule, nextSlotAt: next } };
}

/**
 * After a throttling answer: half the rate in force (not below SLOWEST_FACTOR), and a pause for every
 * sender. Answers within the pause of the last one are the same burst (several sessions saw it): they
 * halve nothing more.
 */
export function throttle(schedule: SendSchedule, now: number): SendSchedule {
  if (schedule.throttledAt > 0 && now - schedule.throttledAt < THROTTLE_PAUSE_MS) return schedule;
  return {
    factor: Math.max(SLOWEST_FACTOR, factorAt(schedule, now) / 2),
    throttledAt: now,
    nextSlotAt: Math.max(schedule.nextSlotAt, now + THROTTLE_PAUSE_MS),
  };
}

/**
 * A relay's answer that says it is being sent to too fast: 421, 451 or 454 whose text speaks of a rate or
 * of throttling (Amazon SES: "454 Throttling failure: Maximum sending rate exceeded"; Postfix's anvil:
 * "421 4.7.0 Error: too many messages … rate"). Other 4xx are about the mail or the relay, not the pace.
 */
export function isThrottlingReply(code: number | undefined, text: string | undefined): boolean {
  return (code === 421 || code === 451 || code === 454) && /\brate\b|throttl/i.test(text ?? "");
}
