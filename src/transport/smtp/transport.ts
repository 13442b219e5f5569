// SMTP as a transport: sessions to the team's own relay (session.ts), fed the DATA payload of each mail
// (dot-stuffed here, from the message every transport shares).
import type { NextMail, OutgoingMail, SmtpResult, SmtpTransaction, Transport, TransportSession } from "../transport";
import { dataPayload } from "./commands";
import { SmtpSession, type SmtpMail, type SmtpOptions } from "./session";

export function smtpTransport(options: SmtpOptions): Transport {
  return {
    name: "smtp",
    async open({ deadline }): Promise<SmtpResult<TransportSession>> {
      const opened = await SmtpSession.open(options, { deadline });
      return opened.ok ? { ok: true, value: new SmtpTransportSession(opened.value) } : opened;
    },
  };
}

class SmtpTransportSession implements TransportSession {
  readonly transport = "smtp";
  /** The wire form of the mail whose envelope went out ahead: the session knows it by identity. */
  private ahead: { mail: OutgoingMail; wire: SmtpMail } | undefined;

  constructor(private readonly session: SmtpSession) {}

  get isBroken(): boolean {
    return this.session.isBroken;
  }

  send(mail: OutgoingMail, { next }: { next?: NextMail } = {}): Promise<SmtpTransaction> {
    const wire = this.ahead?.mail === mail ? this.ahead.wire : wireOf(mail);
    this.ahead = next && next !== "quit" ? { mail: next, wire: wireOf(next) } : undefined;
    return this.session.send(wire, { next: this.ahead?.wire ?? (next === "quit" ? "quit" : undefined) });
  }

  close(): Promise<void> {
    return this.session.close();
  }
}

const wireOf = ({ envelope, message, deadline }: OutgoingMail): SmtpMail => ({ envelope, data: dataPayload(message), deadline });
