// Cloudflare Email Service as a transport: the send_email binding is given Mailroom's own message (a raw
// EmailMessage), so Message-ID, headers, attachments and the DKIM signature are those SMTP would carry.
// The binding takes one recipient per message, so each recipient is one send(), answered on its own;
// its refusals are mapped to SMTP terms by errors.ts. The envelope sender is the From address (the
// binding requires it): a return path of Mailroom's (BOUNCE_ADDRESS) and DSN requests do not apply, and
// bounces of this mail reach Email Service, not Mailroom.
import { EmailMessage } from "cloudflare:email";
import { replyFailure, type OutgoingMail, type RecipientReply, type SmtpFailure, type SmtpResult, type SmtpTransaction, type Transport, type TransportSession } from "../transport";
import { classifyEmailServiceError, type EmailServiceRefusal } from "./errors";

/** A send() is not begun with less time than this left: it might go and its answer never be heard. */
export const SEND_MARGIN_MS = 2000;

export interface CloudflareOptions {
  /**
   * Listed after the relay (TRANSPORT=smtp,cloudflare): its refusals for good become temporary, since the
   * relay, tried again on the next attempt, may well take what Email Service will not.
   */
  fallback?: boolean;
}

export function cloudflareTransport(binding: SendEmail, { fallback = false }: CloudflareOptions = {}): Transport {
  // Nothing to connect to: whether the service takes the mail is known only per send().
  const session = new EmailServiceSession(binding, fallback);
  return { name: "cloudflare", open: async (): Promise<SmtpResult<TransportSession>> => ({ ok: true, value: session }) };
}

class EmailServiceSession implements TransportSession {
  readonly transport = "cloudflare";
  readonly isBroken = false;

  constructor(
    private readonly binding: SendEmail,
    private readonly fallback: boolean,
  ) {}

  async send(mail: OutgoingMail): Promise<SmtpTransaction> {
    const recipients: RecipientReply[] = [];
    const accepted: string[] = [];
    let stopped: SmtpFailure | undefined;
    for (const recipient of mail.envelope.recipients) {
      const command = `send_email to <${recipient}>`;
      if (mail.deadline - Date.now() < SEND_MARGIN_MS) {
        // Too late to hear the answer: not begun, so this one and the rest simply wait.
        stopped = { kind: "timeout", stage: "message", command, message: `${command}: too little of the attempt's time was left to wait for Email Service's answer; not sent` };
        break;
      }
      const answer = await this.sendOne(mail, recipient);
      if (answer.ok) {
        accepted.push(answer.messageId);
        recipients.push({ recipient, code: 250, reply: `accepted by Cloudflare Email Service as ${answer.messageId}`, command });
        continue;
      }
      if (answer.timedOut) {
        // No answer in time: it may have gone all the same, as after a lost reply to SMTP's final dot.
        const reply = "no answer before the attempt's time was up; Email Service may have taken the mail all the same: possible duplicate on the next attempt (same Message-ID)";
        recipients.push({ recipient, code: 451, enhanced_code: "4.4.7", reply, command });
        stopped = { kind: "timeout", stage: "message", command, message: `${command}: ${reply}` };
        break;
      }
      const { text } = answer;
      const refusal = this.fallback && answer.refusal.code >= 500 ? asTemporary(answer.refusal) : answer.refusal;
      const reply = `${refusal.error}: ${text}${refusal === answer.refusal ? "" : " (for good, said Email Service; but it is only the fallback: the relay is tried again)"}`.slice(0, 500);
      const stage = refusal.scope === "message" ? "data" : refusal.scope === "service" ? "mail" : "rcpt";
      const failure = replyFailure({ code: refusal.code, enhancedCode: refusal.enhancedCode, text: reply }, stage, command);
      // A refusal of the message itself before anyone got it ends the mail for every recipient at once.
      if (refusal.scope === "message" && accepted.length === 0) return { recipients, end: { ok: false, failure } };
      recipients.push({ recipient, code: refusal.code, enhanced_code: refusal.enhancedCode, reply, command });
      if (refusal.scope === "service") {
        // Nothing more goes out now (a limit, the sender's setup, the service's trouble): the rest wait.
        stopped = failure;
        break;
      }
    }
    if (accepted.length > 0) return { recipients, end: { ok: true, value: { code: 250, reply: `accepted by Cloudflare Email Service as ${accepted.join(", ")}`.slice(0, 1000) } } };
    if (stopped) return { recipients, end: { ok: false, failure: stopped } };
    // Every recipient refused: the transaction ends with the first refusal, a temporary one if any (as over SMTP).
    const first = recipients.find((r) => r.code < 500) ?? recipients[0]!;
    return { recipients, end: { ok: false, failure: replyFailure({ code: first.code, enhancedCode: first.enhanced_code, text: first.reply }, "rcpt", first.command) } };
  }

  /** One recipient's send(), waited for until the attempt's deadline at most. */
  private async sendOne(mail: OutgoingMail, recipient: string): Promise<{ ok: true; messageId: string } | { ok: false; timedOut: true } | { ok: false; timedOut: false; refusal: EmailServiceRefusal; text: string }> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeUp = new Promise<"time up">((resolve) => (timer = setTimeout(() => resolve("time up"), Math.max(0, mail.deadline - Date.now()))));
    try {
      const result = await Promise.race([this.binding.send(new EmailMessage(mail.fromAddress, recipient, mail.message)), timeUp]);
      if (result === "time up") return { ok: false, timedOut: true };
      return { ok: true, messageId: result.messageId };
    } catch (error) {
      return { ok: false, timedOut: false, refusal: classifyEmailServiceError(error), text: error instanceof Error ? error.message : String(error) };
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {}
}

/** A refusal for good, made temporary: 5xx → 451, 5.x.y → 4.x.y. */
function asTemporary(refusal: EmailServiceRefusal): EmailServiceRefusal {
  return { ...refusal, code: 451, enhancedCode: `4${refusal.enhancedCode.slice(1)}` };
}
