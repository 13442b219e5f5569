// Mailroom's SMTP client: one session to the relay, reused for several mails (greeting, EHLO,
// STARTTLS, AUTH, then MAIL/RCPT/DATA per mail, QUIT). STARTTLS is required when configured:
// credentials never go out in plaintext. Results are structured ({code, enhanced_code, reply,
// command}), never thrown strings; the deadlines and the socket live in smtp-connection.ts.
import type { Config } from "../config";
import type { Envelope } from "../core/message";
import { isAccepted, isPermanentReply } from "../core/retry";
import { replyFailure, SmtpConnection, SmtpFailed, toFailure, type SmtpFailure, type SmtpStage } from "./smtp-connection";
import { parseCapabilities, type Capabilities, type SmtpReply } from "./smtp-reply";

export type { SmtpFailure, SmtpFailureKind, SmtpStage } from "./smtp-connection";
export type SmtpOptions = Config["smtp"];

/** The relay's answer to one RCPT TO. */
export interface RecipientReply {
  recipient: string;
  code: number;
  enhanced_code?: string;
  reply: string;
  /** How failures name the command, e.g. "RCPT TO:<a@b.example>". */
  command: string;
}

/** The relay's answer to the end of the message. */
export interface SmtpAccepted {
  code: number;
  enhanced_code?: string;
  reply: string;
}

/** One mail transaction as it went: each recipient's RCPT reply, and how it ended. */
export interface SmtpTransaction {
  /** The reply to RCPT TO for each recipient the transaction reached, in envelope order. */
  recipients: RecipientReply[];
  /** The reply to the final dot when the relay took the mail; else the failure that ended the transaction. */
  end: SmtpResult<SmtpAccepted>;
}

export type SmtpResult<T> = { ok: true; value: T } | { ok: false; failure: SmtpFailure };

/** RFC 5321 §4.5.3.2.6: wait up to 10 minutes for the reply to the final ".", since giving up early
 * while the relay still accepts the mail is how duplicates happen. */
const DATA_END_TIMEOUT_MS = 10 * 60 * 1000;
/** How the DATA payload ends: the body's own last CRLF, then the final dot (RFC 5321 §4.1.1.4). */
const END_OF_DATA = "\r\n.\r\n";
const encoder = new TextEncoder();

function recipientReply(recipient: string, command: string, reply: SmtpReply): RecipientReply {
  return { recipient, code: reply.code, enhanced_code: reply.enhancedCode, reply: reply.text, command };
}

function base64(text: string): string {
  return btoa(String.fromCharCode(...encoder.encode(text)));
}

export class SmtpSession {
  /** Whether the relay offered PIPELINING (RFC 2920). */
  private pipelining = false;

  private constructor(
    private readonly connection: SmtpConnection,
    private readonly options: SmtpOptions,
  ) {}

  /**
   * Connects, greets, negotiates TLS and authenticates; the session is then ready for send().
   * No wait lasts past `deadline` (epoch ms), the end of the attempt that opens the session.
   */
  static async open(options: SmtpOptions, { deadline = Infinity }: { deadline?: number } = {}): Promise<SmtpResult<SmtpSession>> {
    let session: SmtpSession | undefined;
    try {
      session = new SmtpSession(await SmtpConnection.open(options, deadline), options);
      await session.handshake();
      return { ok: true, value: session };
    } catch (error) {
      session?.connection.close();
      return { ok: false, failure: toFailure(error, "connect", "CONNECT") };
    }
  }

  /** True once the connection can no longer be used (dropped, timed out, out of sync). */
  get isBroken(): boolean {
    return this.connection.isClosed;
  }

  /**
   * One mail transaction: MAIL FROM, RCPT TO for each recipient, then DATA for the recipients the relay
   * accepted (none accepted: no DATA). `data` must be dot-stuffed and end in CRLF.CRLF. Never throws:
   * every RCPT reply is reported, and so is how the transaction ended. No wait lasts past `deadline`.
   */
  async send(envelope: Envelope, data: string, { deadline = Infinity }: { deadline?: number } = {}): Promise<SmtpTransaction> {
    const recipients: RecipientReply[] = [];
    const ended = (failure: SmtpFailure): SmtpTransaction => ({ recipients, end: { ok: false, failure } });
    if (this.isBroken) return ended({ kind: "connection", stage: "mail", command: "MAIL FROM", message: "session is closed" });
    if (!data.endsWith(END_OF_DATA)) {
      return ended({ kind: "protocol", stage: "message", command: "(message content)", message: "the message does not end in CRLF.CRLF; not sending it" });
    }
    if (deadline <= Date.now()) {
      return ended({ kind: "timeout", stage: "mail", command: "MAIL FROM", message: "the attempt's time was up before its transaction began" });
    }
    this.connection.limitWaitsTo(deadline);
    let messageSent = false;
    try {
      await (this.pipelining ? this.pipelinedEnvelope(envelope, recipients) : this.lockStepEnvelope(envelope, recipients));
      if (deadline - Date.now() < this.options.timeoutMs) {
        // Too late to wait for the relay's verdict: stop before the final dot, so the relay discards the
        // unfinished transaction and the next attempt cannot duplicate it (RFC 5321 §4.1.1.4).
        this.connection.fail({ kind: "timeout", stage: "message", command: "(message content)", message: "too little of the attempt's time was left to wait for the reply to the message; stopped before sending it" });
      }
      await this.connection.write(data, "message", "(message content)");
      messageSent = true;
      const reply = await this.connection.readReply("message", "(end of data)", Math.max(this.options.timeoutMs, DATA_END_TIMEOUT_MS));
      if (this.connection.hasUnreadData) {
        this.connection.fail({ kind: "protocol", stage: "message", command: "(end of data)", message: "the relay sent more than one reply to the end of the message" });
      }
      if (reply.code !== 250) throw new SmtpFailed(replyFailure(reply, "message", "(end of data)"));
      return { recipients, end: { ok: true, value: { code: reply.code, enhanced_code: reply.enhancedCode, reply: reply.text } } };
    } catch (error) {
      let failure = toFailure(error, "mail", "MAIL FROM");
      if (messageSent && failure.kind !== "reply") {
        // No clear answer after the whole message went out: the one case SMTP cannot tell apart (RFC 1047).
        failure = { ...failure, message: `${failure.message}; the relay may have taken the mail all the same: possible duplicate on the next attempt (same Message-ID)` };
      }
      // 421: the relay is closing the channel (RFC 5321 §3.8); anything else leaves it usable after RSET.
      if (failure.code === 421) this.connection.close();
      if (failure.kind === "reply" && !this.isBroken) await this.reset();
      return ended(failure);
    }
  }

  /** MAIL FROM, then RCPT TO one by one, then DATA: each command waits for the reply to the one before. */
  private async lockStepEnvelope(envelope: Envelope, recipients: RecipientReply[]): Promise<void> {
    const mail = `MAIL FROM:<${envelope.from}>`;
    await this.expect(mail, 250, "mail");
    for (const recipient of envelope.recipients) {
      const command = `RCPT TO:<${recipient}>`;
      const reply = await this.connection.command(command, "rcpt");
      recipients.push(recipientReply(recipient, command, reply));
      // 421: the relay is closing the channel (RFC 5321 §3.8); the rest must wait for another session.
      if (reply.code === 421) throw new SmtpFailed(replyFailure(reply, "rcpt", command));
    }
    this.throwUnlessSomeoneAccepted(recipients);
    await this.expect("DATA", 354, "data");
  }

  /**
   * RFC 2920: MAIL FROM, every RCPT TO and DATA in one write, then their replies, matched to the commands
   * strictly in order. A refusal is only acted on once every reply is read, so none is left to be taken
   * for the answer to something else; a DATA that was accepted although nothing can be sent gets an empty
   * message, which ends it.
   */
  private async pipelinedEnvelope(envelope: Envelope, recipients: RecipientReply[]): Promise<void> {
    const mail = `MAIL FROM:<${envelope.from}>`;
    const rcpts = envelope.recipients.map((recipient) => ({ recipient, command: `RCPT TO:<${recipient}>` }));
    await this.connection.writeLines([mail, ...rcpts.map((r) => r.command), "DATA"], "mail", "MAIL FROM … DATA (pipelined)");
    const mailReply = await this.readInGroup("mail", mail);
    for (const { recipient, command } of rcpts) recipients.push(recipientReply(recipient, command, await this.readInGroup("rcpt", command)));
    const dataReply = await this.readInGroup("data", "DATA");
    const refusal =
      mailReply.code !== 250 ? replyFailure(mailReply, "mail", mail) : recipients.every((r) => !isAccepted(r)) ? this.firstRefusal(recipients) : undefined;
    if (refusal) {
      if (dataReply.code === 354) await this.connection.command(".", "data", "(empty message)");
      throw new SmtpFailed(refusal);
    }
    if (dataReply.code !== 354) throw new SmtpFailed(replyFailure(dataReply, "data", "DATA"));
  }

  /** One reply of a pipelined group; a 421 ends the session at once (the relay is closing it). */
  private async readInGroup(stage: SmtpStage, command: string): Promise<SmtpReply> {
    const reply = await this.connection.readReply(stage, command);
    if (reply.code === 421) throw new SmtpFailed(replyFailure(reply, stage, command));
    return reply;
  }

  private throwUnlessSomeoneAccepted(recipients: RecipientReply[]): void {
    if (recipients.every((r) => !isAccepted(r))) throw new SmtpFailed(this.firstRefusal(recipients));
  }

  /** Nobody to send to: the transaction ends with the first refusal, a temporary one if any. */
  private firstRefusal(recipients: RecipientReply[]): SmtpFailure {
    const first = recipients.find((r) => !isPermanentReply(r.code, "rcpt")) ?? recipients[0]!;
    return replyFailure({ code: first.code, enhancedCode: first.enhanced_code, text: first.reply, lines: [] }, "rcpt", first.command);
  }

  /** Says QUIT and closes; never throws. */
  async close(): Promise<void> {
    if (!this.isBroken) {
      try {
        await this.expect("QUIT", 221, "mail");
      } catch {
        // The relay may drop the connection right after QUIT; nothing is lost either way.
      }
    }
    this.connection.close();
  }

  private async handshake(): Promise<void> {
    const greeting = await this.connection.readReply("greeting", "(greeting)");
    if (greeting.code !== 220) throw new SmtpFailed(replyFailure(greeting, "greeting", "(greeting)"));
    let capabilities = await this.ehlo();
    this.pipelining = capabilities.keywords.has("PIPELINING");
    if (this.options.security === "starttls") {
      if (!capabilities.keywords.has("STARTTLS")) {
        throw new SmtpFailed({
          kind: "tls",
          stage: "starttls",
          command: "EHLO",
          message: "SMTP_SECURITY is starttls but the server does not offer STARTTLS; refusing to continue in plaintext",
        });
      }
      await this.expect("STARTTLS", 220, "starttls");
      this.connection.upgradeToTls();
      capabilities = await this.ehlo();
      this.pipelining = capabilities.keywords.has("PIPELINING"); // only what the relay said after TLS counts
    }
    if (this.options.user !== undefined) await this.authenticate(capabilities);
  }

  private async ehlo(): Promise<Capabilities> {
    const reply = await this.connection.command(`EHLO ${this.options.heloName}`, "ehlo");
    if (reply.code === 250) return parseCapabilities(reply);
    if (reply.code >= 500 && reply.code < 600) {
      // Pre-ESMTP relays answer EHLO with 5xx; HELO gives a session without extensions.
      await this.expect(`HELO ${this.options.heloName}`, 250, "ehlo");
      return { keywords: new Set(), authMechanisms: new Set() };
    }
    throw new SmtpFailed(replyFailure(reply, "ehlo", "EHLO"));
  }

  private async authenticate(capabilities: Capabilities): Promise<void> {
    const user = this.options.user!;
    const pass = this.options.pass ?? "";
    if (capabilities.authMechanisms.has("PLAIN")) {
      await this.expect(`AUTH PLAIN ${base64(`\0${user}\0${pass}`)}`, 235, "auth", "AUTH PLAIN");
    } else if (capabilities.authMechanisms.has("LOGIN")) {
      await this.expect("AUTH LOGIN", 334, "auth");
      await this.expect(base64(user), 334, "auth", "AUTH LOGIN (username)");
      await this.expect(base64(pass), 235, "auth", "AUTH LOGIN (password)");
    } else {
      throw new SmtpFailed({
        kind: "auth",
        stage: "auth",
        command: "EHLO",
        message: "SMTP_USER is set but the server offers neither AUTH PLAIN nor AUTH LOGIN",
      });
    }
  }

  private async reset(): Promise<void> {
    try {
      await this.expect("RSET", 250, "mail");
    } catch {
      this.connection.close();
    }
  }

  /** A command whose reply must be `expected`; any other reply is a failure (kind "auth" during AUTH). */
  private async expect(line: string, expected: number, stage: SmtpStage, shownAs = line): Promise<SmtpReply> {
    const reply = await this.connection.command(line, stage, shownAs);
    if (reply.code !== expected) throw new SmtpFailed({ ...replyFailure(reply, stage, shownAs), ...(stage === "auth" ? { kind: "auth" as const } : {}) });
    return reply;
  }
}
