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
      let leaseId: string | undefined;
      if (settings.maxConnections !== undefined) {
        try {
          const waitMs = Math.max(0, (options.waitUntil ?? 0) - Date.now());
          const grant = await pacer.acquire(settings.maxConnections, settings.leaseMs, waitMs);
          if (!grant.granted) return { ok: false, failure: pacingFailure("(waiting for a connection)", `every connection SMTP_MAX_CONNECTIONS (${settings.maxConnections}) allows is in use`) };
          leaseId = grant.leaseId;
        } catch (error) {
          return { ok: false, failure: pacingFailure("(waiting for a connection)", `the relay's pacer could not be asked: ${String(error)}`.slice(0, 1000)) };
        }
      }
      const opened = await inner.open(options);
      if (opened.ok) return { ok: true, value: new PacedSession(opened.value, pacer, settings, leaseId) };
      if (isThrottlingReply(opened.failure.code, opened.failure.reply)) await tell(() => pacer.throttled());
      if (leaseId) await tell(() => pacer.release(leaseId));
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

class PacedSession implements TransportSession {
  readonly transport;
  /** The next mail's slot, taken in the send before its own. */
  private reservedAhead: { mail: OutgoingMail; at: number } | undefined;
  private renewal: ReturnType<typeof setInterval> | undefined;
  /** The lease ended without this session: it sends nothing more and lets the lane open another. */
  private leaseLost = false;

  constructor(
    private readonly inner: TransportSession,
    private readonly pacer: Pacer,
    private readonly settings: PacingSettings,
    private readonly leaseId: string | undefined,
  ) {
    this.transport = inner.transport;
    if (leaseId && settings.maxConnections !== undefined) {
      const max = settings.maxConnections;
      this.renewal = setInterval(() => {
        this.pacer.renew(leaseId, max, settings.leaseMs).then(
          (kept) => (this.leaseLost ||= !kept),
          () => {}, // the next renewal tries again; the lease is longer than three of these
        );
      }, settings.leaseMs / 3);
    }
  }

  get isBroken(): boolean {
    return this.leaseLost || this.inner.isBroken;
  }

  async send(mail: OutgoingMail, options: { next?: NextMail } = {}): Promise<SmtpTransaction> {
    let { next } = options;
    if (this.settings.maxPerSecond !== undefined) {
      // This mail's slot (taken already if it was to go out ahead), and one for the next mail's envelope.
      const ahead = this.reservedAhead?.mail === mail ? this.reservedAhead.at : undefined;
      const following = next && next !== "quit" ? next : undefined;
      let slots: number[];
      try {
        slots = await this.pacer.reserve(this.settings.maxPerSecond, (ahead === undefined ? 1 : 0) + (following ? 1 : 0));
      } catch (error) {
        return ended(pacingFailure("(waiting for a send slot)", `the relay's pacer could not be asked: ${String(error)}`.slice(0, 1000)));
      }
      const at = ahead ?? slots.shift()!;
      this.reservedAhead = following && { mail: following, at: slots[0]! };
      if (at > mail.deadline) return ended(pacingFailure("(waiting for a send slot)", `SMTP_MAX_PER_SECOND (${this.settings.maxPerSecond}) left no slot before the attempt's time was up`));
      if (at > Date.now()) await new Promise((resolve) => setTimeout(resolve, at - Date.now()));
      // The next envelope goes out behind this mail's dot only if its slot has come by then; else in its own
      // send, at its slot. (A mail sent late would bunch up with the one after it.)
      if (this.reservedAhead && this.reservedAhead.at > Date.now()) next = undefined;
    }
    const transaction = await this.inner.send(mail, { next });
    if (isThrottling(transaction)) await tell(() => this.pacer.throttled());
    return transaction;
  }

  async close(): Promise<void> {
    clearInterval(this.renewal);
    await this.inner.close();
    if (this.leaseId) await tell(() => this.pacer.release(this.leaseId!));
  }
}

/** Whether any answer in the transaction said the relay is being sent to too fast. */
function isThrottling({ recipients, end }: SmtpTransaction): boolean {
  return recipients.some((r) => isThrottlingReply(r.code, r.reply)) || (!end.ok && isThrottlingReply(end.failure.code, end.failure.reply));
}
