// SMTP to a relay that must never be overrun by the deployment as a whole: before a session connects it
// takes a connection lease from the relay's pacer (a Durable Object, pacing/relay-pacer.ts), renewed
// while the session lives and released when it ends; before a mail's envelope goes out it takes that
// mail's slot in the shared send schedule. A throttling answer from the relay slows the schedule for
// every invocation. Without SMTP_MAX_CONNECTIONS and SMTP_MAX_PER_SECOND this wrapper is not used at all.
import type { Config } from "../../config";
import { isThrottlingReply } from "../../core/pacing";
import type { RelayPacer } from "../../pacing/relay-pacer";
import { ended, type NextMail, type OpenOptions, type OutgoingMail, type SmtpFailure, type SmtpResult, type SmtpTransaction, type Transport, type TransportSession } from "../transport";

export type PacingSettings = NonNullable<Config["pacing"]>;
type Pacer = DurableObjectStub<RelayPacer>;

const pacingFailure = (command: string, message: string): SmtpFailure => ({ kind: "timeout", stage: "pacing", command, message });

export function pacedTransport(inner: Transport, pacer: Pacer, settings: PacingSettings): Transport {
  return {
    name: inner.name,
    async open(options: OpenOptions): Promise<SmtpResult<TransportSession>> {
      let lease: Lease | undefined;
      if (settings.maxConnections !== undefined) {
        try {
          const waitMs = Math.max(0, (options.waitUntil ?? 0) - Date.now());
          const grant = await pacer.acquire(settings.maxConnections, settings.leaseMs, waitMs);
          if (!grant.granted) return { ok: false, failure: pacingFailure("(waiting for a connection)", `every connection SMTP_MAX_CONNECTIONS (${settings.maxConnections}) allows is in use`) };
          lease = new Lease(pacer, grant.leaseId, settings.leaseMs);
        } catch (error) {
          return { ok: false, failure: pacingFailure("(waiting for a connection)", `the relay's pacer could not be asked: ${String(error)}`.slice(0, 1000)) };
        }
      }
      const opened = await inner.open(options);
      if (opened.ok) return { ok: true, value: new PacedSession(opened.value, pacer, settings, lease) };
      if (isThrottlingReply(opened.failure.code, opened.failure.reply)) await tell(() => pacer.throttled());
      await lease?.end();
      return opened;
    },
  };
}

/** A call to the pacer whose failure changes nothing here: a lease not released ends with its time. */
async function tell(call: () => Promise<unknown>): Promise<void> {
  try {
    await call();
  } catch {
    // (the lease expires; the schedule goes on at its pace)
  }
}

/** A connection's place, renewed from the moment it is granted (the handshake too) until the session ends. */
class Lease {
  /** It ended without us (renewals did not arrive in time): the session sends nothing more. */
  lost = false;
  private readonly renewal: ReturnType<typeof setInterval>;

  constructor(
    private readonly pacer: Pacer,
    private readonly id: string,
    leaseMs: number,
  ) {
    this.renewal = setInterval(() => {
      pacer.renew(id, leaseMs).then(
        (kept) => (this.lost ||= !kept),
        () => {}, // the next renewal tries again: a lease outlasts three of them
      );
    }, leaseMs / 3);
  }

  async end(): Promise<void> {
    clearInterval(this.renewal);
    await tell(() => this.pacer.release(this.id));
  }
}

/** The next mail's slot, taken in the send before its own, and whether its envelope went out then. */
interface KeptSlot {
  mail: OutgoingMail;
  at: number;
  pipelined: boolean;
}

class PacedSession implements TransportSession {
  readonly transport;
  private kept: KeptSlot | undefined;

  constructor(
    private readonly inner: TransportSession,
    private readonly pacer: Pacer,
    private readonly settings: PacingSettings,
    private readonly lease: Lease | undefined,
  ) {
    this.transport = inner.transport;
  }

  get isBroken(): boolean {
    return this.lease?.lost === true || this.inner.isBroken;
  }

  async send(mail: OutgoingMail, options: { next?: NextMail } = {}): Promise<SmtpTransaction> {
    let { next } = options;
    const perSecond = this.settings.maxPerSecond;
    if (perSecond !== undefined) {
      const kept = this.kept?.mail === mail ? this.kept : undefined;
      this.kept = undefined;
      // An envelope already on the wire goes on now, whatever the pacer says: the session is mid-transaction.
      const onWire = kept?.pipelined === true;
      // A slot kept for a mail whose envelope did not go ahead is used only while fresh (a late one would bunch up).
      const fresh = kept !== undefined && (onWire || kept.at >= Date.now() - 1000 / perSecond);
      const following = next && next !== "quit" ? next : undefined;
      const count = (fresh ? 0 : 1) + (following ? 1 : 0);
      let slots: number[] = [];
      try {
        if (count > 0) slots = await this.pacer.reserve(perSecond, count);
      } catch (error) {
        if (!onWire) return ended(pacingFailure("(waiting for a send slot)", `the relay's pacer could not be asked: ${String(error)}`.slice(0, 1000)));
        next = undefined; // this one goes; the next asks again in its own send
      }
      if (!onWire) {
        const at = fresh ? kept!.at : slots.shift()!;
        if (at > mail.deadline) return ended(pacingFailure("(waiting for a send slot)", `SMTP_MAX_PER_SECOND (${perSecond}) left no slot before the attempt's time was up`));
        if (at > Date.now()) await new Promise((resolve) => setTimeout(resolve, at - Date.now()));
      }
      if (following && next !== undefined) {
        // The next envelope goes out behind this mail's dot only if its slot has come; else in its own send.
        const at = slots.at(-1)!;
        const pipelined = at <= Date.now();
        if (!pipelined) next = undefined;
        this.kept = { mail: following, at, pipelined };
      }
    }
    const transaction = await this.inner.send(mail, { next });
    if (isThrottling(transaction)) await tell(() => this.pacer.throttled());
    return transaction;
  }

  async close(): Promise<void> {
    await this.inner.close();
    await this.lease?.end();
  }
}

/** Whether any answer in the transaction said the relay is being sent to too fast. */
function isThrottling({ recipients, end }: SmtpTransaction): boolean {
  return recipients.some((r) => isThrottlingReply(r.code, r.reply)) || (!end.ok && isThrottlingReply(end.failure.code, end.failure.reply));
}
