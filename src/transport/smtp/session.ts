// Mailroom's SMTP client: one session to the relay, reused for several mails (the handshake in
// handshake.ts, then MAIL/RCPT/DATA per mail, pipelined when the relay offers it, and QUIT). Results are
// structured ({code, enhanced_code, reply, command}), never thrown strings; the command text is in
// commands.ts, the deadlines and the socket in connection.ts.
import type { Config } from "../../config";
import type { Envelope } from "../../core/message";
import { isAccepted, isPermanentReply } from "../../core/retry";
import { replyFailure, type RecipientReply, type SmtpFailure, type SmtpResult, type SmtpStage, type SmtpTransaction } from "../transport";
import { mailLine, rcptLine, recipientReply } from "./commands";
import { SmtpConnection, SmtpFailed, toFailure } from "./connection";
import { handshake } from "./handshake";
import type { SmtpReply } from "./reply";

export type SmtpOptions = NonNullable<Config["smtp"]>;

/** RFC 5321 §4.5.3.2.6: wait up to 10 minutes for the reply to the final ".", since giving up early
 * while the relay still accepts the mail is how duplicates happen. */
const DATA_END_TIMEOUT_MS = 10 * 60 * 1000;
/** How the DATA payload ends: the body's own last CRLF, then the final dot (RFC 5321 §4.1.1.4). */
const END_OF_DATA = "\r\n.\r\n";

/** One mail for send(): its envelope, its dot-stuffed content ending in CRLF.CRLF, and the epoch ms no wait may outlast. */
export interface SmtpMail {
  envelope: Envelope;
  data: string;
  deadline?: number;
}

/** What comes after a mail on the session: the next mail (its envelope goes out behind the final dot) or QUIT. */
export type SmtpNext = SmtpMail | "quit";

/** A mail whose MAIL FROM … DATA went out behind the previous mail's final dot, and their replies. */
interface Ahead {
  mail: SmtpMail;
  replies: SmtpReply[];
}

/** How long the reply to a QUIT sent behind the last final dot is waited for; nothing depends on it. */
const QUIT_REPLY_WAIT_MS = 5000;

export class SmtpSession {
  /** Whether the relay offered PIPELINING (RFC 2920). */
  private pipelining = false;
  /** Whether the relay offered DSN (RFC 3461): only then do MAIL and RCPT carry its parameters (§4). */
  private dsn = false;
  /** The next mail's envelope, already written and answered (pipelining across mails). */
  private ahead: Ahead | undefined;
  /** A refused envelope left a transaction open: the next group starts with RSET. */
  private resetFirst = false;
  /** The relay answered DATA with 354 and waits for content: nothing but content may be written. */
  private dataOpen = false;

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
      ({ pipelining: session.pipelining, dsn: session.dsn } = await handshake(session.connection, options));
      return { ok: true, value: session };
    } catch (error) {
      session?.connection.close();
      return { ok: false, failure: toFailure(error, "connect", "CONNECT") };
    }
  }

  /** True once the connection can no longer be used (dropped, timed out, out of sync, or QUIT said). */
  get isBroken(): boolean {
    return this.connection.isClosed;
  }

  /**
   * One mail transaction: MAIL FROM, RCPT TO for each recipient, then DATA for the recipients the relay
   * accepted (none accepted: no DATA). Never throws: every RCPT reply is reported, and so is how the
   * transaction ended. No wait lasts past the mail's deadline.
   *
   * With PIPELINING, `next` goes out in the same write as this mail's content and final dot: the next
   * mail's MAIL FROM … DATA (their replies are read here and kept for its own send(), which must come
   * next), or QUIT when this is the session's last mail. The first reply after the final dot is this
   * mail's verdict, whatever follows it (RFC 2920 §3.1): a failure in the next mail's group ends the
   * session and leaves that mail unsent, to be sent again on another. Without PIPELINING, `next` is ignored.
   */
  async send(mail: SmtpMail, { next }: { next?: SmtpNext } = {}): Promise<SmtpTransaction> {
    const { envelope, data, deadline = Infinity } = mail;
    const recipients: RecipientReply[] = [];
    const ended = (failure: SmtpFailure): SmtpTransaction => ({ recipients, end: { ok: false, failure } });
    const ahead = this.ahead;
    this.ahead = undefined;
    const abandon = (failure: SmtpFailure): SmtpTransaction => {
      // A DATA already answered 354 would take whatever comes next as content: the session ends here.
      if (this.dataOpen) this.connection.close();
      return ended(failure);
    };
    if (ahead && ahead.mail !== mail) {
      return abandon({ kind: "protocol", stage: "mail", command: "MAIL FROM", message: "mails were sent out of the order their envelopes went out in; closing the session" });
    }
    if (this.isBroken) return ended({ kind: "connection", stage: "mail", command: "MAIL FROM", message: "session is closed" });
    if (envelope.recipients.length === 0) {
      return abandon({ kind: "protocol", stage: "rcpt", command: "RCPT TO", message: "no recipient to send to" });
    }
    if (!data.endsWith(END_OF_DATA)) {
      return abandon({ kind: "protocol", stage: "message", command: "(message content)", message: "the message does not end in CRLF.CRLF; not sending it" });
    }
    if (deadline <= Date.now()) {
      return abandon({ kind: "timeout", stage: "mail", command: "MAIL FROM", message: "the attempt's time was up before its transaction began" });
    }
    this.connection.limitWaitsTo(deadline);
    let messageSent = false;
    try {
      if (this.pipelining) {
        const replies = ahead?.replies ?? (await this.pipelineEnvelope(envelope));
        const refusal = this.judgeEnvelope(envelope, replies, recipients);
        if (refusal) {
          if (this.dataOpen) await this.endEmptyMessage(next);
          else this.resetFirst = true; // MAIL FROM may have been accepted: the next group starts with RSET
          throw new SmtpFailed(refusal);
        }
      } else await this.lockStepEnvelope(envelope, recipients);
      if (deadline - Date.now() < this.options.timeoutMs) {
        // Too late to wait for the relay's verdict: stop before the final dot, so the relay discards the
        // unfinished transaction and the next attempt cannot duplicate it (RFC 5321 §4.1.1.4).
        this.connection.fail({ kind: "timeout", stage: "message", command: "(message content)", message: "too little of the attempt's time was left to wait for the reply to the message; stopped before sending it" });
      }
      const following = this.followingMail(next);
      await this.connection.write(data + this.trailer(next, following), "message", "(message content)");
      this.dataOpen = false;
      messageSent = true;
      const reply = await this.connection.readReply("message", "(end of data)", Math.max(this.options.timeoutMs, DATA_END_TIMEOUT_MS));
      if (following || (this.pipelining && next === "quit")) await this.readFollowing(following);
      else if (this.connection.hasUnreadData) {
        // Nothing was sent behind the dot, so anything more is a second answer to it: which one counts?
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
      // 421: the relay is closing the channel (RFC 5321 §3.8). A DATA of this mail's still open would take
      // any command as content (one open for the mail sent ahead waits for that mail's content).
      if (failure.code === 421 || (this.dataOpen && !this.ahead)) this.connection.close();
      if (!this.pipelining && failure.kind === "reply" && failure.stage !== "message" && !this.isBroken) await this.reset();
      return ended(failure);
    }
  }

  /**
   * A DATA the relay accepted although it took no recipient gets an empty message, which ends it (RFC 2920
   * §3.1), with `next` behind it. The transaction's outcome is its refusal, whatever the relay says to this.
   */
  private async endEmptyMessage(next: SmtpNext | undefined): Promise<void> {
    const following = this.followingMail(next);
    try {
      await this.connection.write(".\r\n" + this.trailer(next, following), "data", "(empty message)");
      this.dataOpen = false;
      await this.connection.readReply("data", "(empty message)");
      if (following || next === "quit") await this.readFollowing(following);
    } catch {
      this.connection.close();
    }
  }

  /**
   * The mail whose envelope may follow this one's final dot: only one that can be sent as it is (else its
   * own send() writes its envelope, and refuses it there).
   */
  private followingMail(next: SmtpNext | undefined): SmtpMail | undefined {
    if (!this.pipelining || !next || next === "quit" || !next.data.endsWith(END_OF_DATA) || next.envelope.recipients.length === 0) return undefined;
    return [next.envelope.from, ...next.envelope.recipients].some((address) => /[\r\n]/.test(address)) ? undefined : next;
  }

  /** What goes out behind the final dot: the following mail's envelope, or QUIT after the last one. */
  private trailer(next: SmtpNext | undefined, following: SmtpMail | undefined): string {
    if (following) return this.envelopeLines(following.envelope).map((line) => `${line}\r\n`).join("");
    return this.pipelining && next === "quit" ? "QUIT\r\n" : "";
  }

  /**
   * The replies to what followed the final dot, once the dot's own reply is read; never throws. The
   * following mail's replies are kept for its send(); if they cannot be read, or no longer line up with
   * its commands (a DATA answered 2xx, a reply left over), the session ends and that mail was not sent.
   * QUIT's reply is waited for briefly and changes nothing.
   */
  private async readFollowing(following: SmtpMail | undefined): Promise<void> {
    try {
      if (!following) {
        await this.connection.readReply("mail", "QUIT", Math.min(this.options.timeoutMs, QUIT_REPLY_WAIT_MS));
        this.connection.close();
        return;
      }
      const replies = await this.readEnvelopeReplies(following.envelope);
      if (replies.at(-1)!.code < 300 || this.connection.hasUnreadData) {
        this.connection.fail({ kind: "protocol", stage: "mail", command: "MAIL FROM … DATA (pipelined)", message: "the relay's replies no longer matched the commands" });
      }
      this.ahead = { mail: following, replies };
      this.dataOpen = replies.at(-1)!.code === 354;
    } catch {
      this.connection.close();
    }
  }

  /** MAIL FROM, then RCPT TO one by one, then DATA: each command waits for the reply to the one before. */
  private async lockStepEnvelope(envelope: Envelope, recipients: RecipientReply[]): Promise<void> {
    await this.connection.expect(mailLine(envelope, this.dsn), 250, "mail", `MAIL FROM:<${envelope.from}>`);
    for (const recipient of envelope.recipients) {
      const command = `RCPT TO:<${recipient}>`;
      const reply = await this.connection.command(rcptLine(envelope, recipient, this.dsn), "rcpt", command);
      recipients.push(recipientReply(recipient, command, reply));
      // 421: the relay is closing the channel (RFC 5321 §3.8); the rest must wait for another session.
      if (reply.code === 421) throw new SmtpFailed(replyFailure(reply, "rcpt", command));
    }
    this.throwUnlessSomeoneAccepted(recipients);
    await this.connection.expect("DATA", 354, "data");
    this.dataOpen = true;
  }

  /** RFC 2920: (RSET,) MAIL FROM, every RCPT TO and DATA as one group. */
  private envelopeLines(envelope: Envelope): string[] {
    const lines = [mailLine(envelope, this.dsn), ...envelope.recipients.map((recipient) => rcptLine(envelope, recipient, this.dsn)), "DATA"];
    if (this.resetFirst) lines.unshift("RSET");
    return lines;
  }

  /** Writes the envelope group and reads its replies. */
  private async pipelineEnvelope(envelope: Envelope): Promise<SmtpReply[]> {
    await this.connection.writeLines(this.envelopeLines(envelope), "mail", "MAIL FROM … DATA (pipelined)");
    const replies = await this.readEnvelopeReplies(envelope);
    this.dataOpen = replies.at(-1)!.code === 354;
    return replies;
  }

  /**
   * The replies to an envelope group, matched to its commands strictly in order: RSET's (when it led the
   * group), MAIL's, one per RCPT, DATA's. RSET's is checked here; the rest are judged by judgeEnvelope().
   */
  private async readEnvelopeReplies(envelope: Envelope): Promise<SmtpReply[]> {
    if (this.resetFirst) {
      this.resetFirst = false;
      const reset = await this.readInGroup("mail", "RSET");
      // Not a verdict on the mail it leads: the session is out of order, and the mail goes again on another.
      if (reset.code !== 250) this.connection.fail({ ...replyFailure(reset, "mail", "RSET"), kind: "protocol" });
    }
    const replies = [await this.readInGroup("mail", `MAIL FROM:<${envelope.from}>`)];
    for (const recipient of envelope.recipients) replies.push(await this.readInGroup("rcpt", `RCPT TO:<${recipient}>`));
    replies.push(await this.readInGroup("data", "DATA"));
    return replies;
  }

  /**
   * Reports each RCPT reply and returns why the transaction cannot go on, if it cannot. A refusal is only
   * acted on once every reply of the group is read, so none is left to be taken for the answer to
   * something else.
   */
  private judgeEnvelope(envelope: Envelope, replies: SmtpReply[], recipients: RecipientReply[]): SmtpFailure | undefined {
    const [mailReply, ...rest] = replies;
    const dataReply = rest.pop()!;
    envelope.recipients.forEach((recipient, i) => recipients.push(recipientReply(recipient, `RCPT TO:<${recipient}>`, rest[i]!)));
    if (mailReply!.code !== 250) return replyFailure(mailReply!, "mail", `MAIL FROM:<${envelope.from}>`);
    if (recipients.every((r) => !isAccepted(r))) return this.firstRefusal(recipients);
    if (dataReply.code !== 354) return replyFailure(dataReply, "data", "DATA");
    return undefined;
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
    return replyFailure({ code: first.code, enhancedCode: first.enhanced_code, text: first.reply }, "rcpt", first.command);
  }

  /** Says QUIT (unless a DATA is left open: then the relay discards it) and closes; never throws. */
  async close(): Promise<void> {
    if (!this.isBroken && !this.dataOpen) {
      try {
        await this.connection.expect("QUIT", 221, "mail");
      } catch {
        // The relay may drop the connection right after QUIT; nothing is lost either way.
      }
    }
    this.connection.close();
  }

  private async reset(): Promise<void> {
    try {
      await this.connection.expect("RSET", 250, "mail");
    } catch {
      this.connection.close();
    }
  }
}
