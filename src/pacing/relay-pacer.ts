// The one place every consumer invocation asks before it connects to the relay or sends it a mail: a
// Durable Object per relay (named host:port), so SMTP_MAX_CONNECTIONS and SMTP_MAX_PER_SECOND hold for
// the whole deployment. Connection leases are kept in its storage (an evicted or restarted object still
// knows them) and expire unless renewed, so an invocation that dies frees its place when its lease ends;
// a waiter is woken when a lease is released or ends, not by polling. The rules are core/pacing.ts.
import { DurableObject } from "cloudflare:workers";
import { FRESH_SCHEDULE, hasRoom, liveLeases, nextExpiry, reserveSlots, throttle, type ConnectionLeases, type SendSchedule } from "../core/pacing";

export type LeaseGrant = { granted: true; leaseId: string } | { granted: false };

interface Waiter {
  max: number;
  leaseMs: number;
  until: number;
  resolve: (grant: LeaseGrant) => void;
}

export class RelayPacer extends DurableObject {
  private state: ConnectionLeases = { leases: {} };
  private schedule: SendSchedule = FRESH_SCHEDULE;
  private waiters: Waiter[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.state = (await ctx.storage.get<ConnectionLeases>("leases")) ?? { leases: {} };
    });
  }

  /**
   * A connection lease of `leaseMs` when fewer than `max` run; else waits for one until `waitMs` has
   * passed (0: does not wait).
   */
  async acquire(max: number, leaseMs: number, waitMs: number): Promise<LeaseGrant> {
    const now = Date.now();
    // Those already waiting come first.
    if (waitMs <= 0) return this.waiters.length === 0 && hasRoom(this.state, max, now) ? this.grant(leaseMs, now) : { granted: false };
    const granted = new Promise<LeaseGrant>((resolve) => this.waiters.push({ max, leaseMs, until: now + waitMs, resolve }));
    this.serveWaiters();
    return granted;
  }

  /**
   * Extends a running lease; false when it had ended or was given back (it is not taken again: its place
   * may be another's by now, and a renewal that arrives after the release must not bring it back).
   */
  async renew(leaseId: string, leaseMs: number): Promise<boolean> {
    const now = Date.now();
    this.state = liveLeases(this.state, now);
    if (!(leaseId in this.state.leases)) return false;
    this.state.leases[leaseId] = now + leaseMs;
    this.save();
    return true;
  }

  async release(leaseId: string): Promise<void> {
    delete this.state.leases[leaseId];
    this.save();
    this.serveWaiters();
  }

  /** The times (epoch ms) at which `count` messages may go at `perSecond`, in order. */
  async reserve(perSecond: number, count: number): Promise<number[]> {
    const { at, schedule } = reserveSlots(this.schedule, perSecond, count, Date.now());
    this.schedule = schedule;
    return at;
  }

  /** The relay said it is being sent to too fast: every sender slows down. */
  async throttled(): Promise<void> {
    this.schedule = throttle(this.schedule, Date.now());
  }

  private grant(leaseMs: number, now: number): LeaseGrant {
    const leaseId = crypto.randomUUID();
    this.state = liveLeases(this.state, now);
    this.state.leases[leaseId] = now + leaseMs;
    this.save();
    return { granted: true, leaseId };
  }

  /**
   * Not awaited, so that every change of the leases happens in one synchronous step (no other call can
   * come in between a check for room and its grant); the output gate holds each answer until the write
   * it follows is stored.
   */
  private save(): void {
    void this.ctx.storage.put("leases", this.state);
  }

  /** Tells every waiter whose wait is over (wherever it stands in line) no, then grants the others in order while there is room. */
  private serveWaiters(): void {
    const now = Date.now();
    for (const waiter of this.waiters.filter((w) => w.until <= now)) waiter.resolve({ granted: false });
    this.waiters = this.waiters.filter((w) => w.until > now);
    while (this.waiters.length > 0 && hasRoom(this.state, this.waiters[0]!.max, now)) {
      const first = this.waiters.shift()!;
      first.resolve(this.grant(first.leaseMs, now));
    }
    this.wakeLater(now);
  }

  /** A timer for the next moment a waiter could be served (a lease ends) or must be told no. */
  private wakeLater(now: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waiters.length === 0) return;
    const at = Math.min(nextExpiry(this.state, now) ?? Infinity, ...this.waiters.map((w) => w.until));
    this.timer = setTimeout(() => this.serveWaiters(), Math.max(0, at - now) + 1);
  }
}
