// The seam between the delivery engine and the ways mail leaves: a transport opens sessions, and a
// session takes one mail at a time and reports, per recipient, what became of it. SMTP (smtp/) and
// Cloudflare Email Service (cloudflare.ts) implement it; every transport reports in SMTP's terms (reply
// codes, enhanced status codes, the stage a failure happened at), which is what the retry policy and the
// history speak, so a transport that is not SMTP maps its answers onto them (see cloudflare-errors.ts).
import type { Envelope } from "../core/message";

export type TransportName = "smtp" | "cloudflare";

/**
 * Where a failure happened: "session" stages concern the relay, "message" stages concern one mail;
 * "pacing": Mailroom's own limits on the relay (SMTP_MAX_CONNECTIONS, SMTP_MAX_PER_SECOND) held it back.
 */
export type SmtpStage = "pacing" | "connect" | "greeting" | "ehlo" | "starttls" | "auth" | "mail" | "rcpt" | "data" | "message";

/**
 * "content": the message itself cannot be put on the wire, which no retry changes. "storage": a part of
 * it kept outside the row (attachments in R2) could not be read this time. "signing": the DKIM key could
 * not be used (a setting to fix; the mail waits).
 */
export type SmtpFailureKind = "connection" | "timeout" | "tls" | "auth" | "protocol" | "reply" | "content" | "storage" | "signing";

export interface SmtpFailure {
  kind: SmtpFailureKind;
  stage: SmtpStage;
  /** The command that was answered (passwords never appear here). */
  command: string;
  code?: number;
  enhanced_code?: string;
  reply?: string;
  message: string;
}

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

/** A refusal as a failure of `command` at `stage`: "RCPT TO:<a@b> answered 550 5.1.1 No such user". */
export function replyFailure(reply: { code: number; enhancedCode?: string; text: string }, stage: SmtpStage, command: string): SmtpFailure {
  return {
    kind: "reply",
    stage,
    command,
    code: reply.code,
    enhanced_code: reply.enhancedCode,
    reply: reply.text,
    message: `${command} answered ${reply.code}${reply.enhancedCode ? ` ${reply.enhancedCode}` : ""} ${reply.text}`.trim(),
  };
}

/** A transaction that ended before any recipient was reached. */
export const ended = (failure: SmtpFailure): SmtpTransaction => ({ recipients: [], end: { ok: false, failure } });

/** One mail for a session: its envelope, the message as it goes out (RFC 5322, not dot-stuffed) and the epoch ms no wait may outlast. */
export interface OutgoingMail {
  envelope: Envelope;
  /** The message, DKIM-signed when configured: the same bytes whichever transport carries it. */
  message: string;
  /** The From header's address: the envelope sender for a transport that cannot use a return path. */
  fromAddress: string;
  deadline: number;
}

/** What comes after a mail on the session: the next mail (an SMTP session pipelines its envelope) or the session's end. */
export type NextMail = OutgoingMail | "quit";

export interface TransportSession {
  readonly transport: TransportName;
  /** True once the session can no longer be used: the lane opens another. */
  readonly isBroken: boolean;
  /** One mail; never throws: every recipient's answer is reported, and how the mail ended. */
  send(mail: OutgoingMail, options?: { next?: NextMail }): Promise<SmtpTransaction>;
  /** Ends the session; never throws. */
  close(): Promise<void>;
}

export interface OpenOptions {
  deadline: number;
  /** Until when the open may wait for a place under SMTP_MAX_CONNECTIONS; none: it does not wait. */
  waitUntil?: number;
}

export interface Transport {
  readonly name: TransportName;
  /**
   * A session ready for send(), or why the transport cannot be used at all now (the relay cannot be
   * reached, refuses TLS or AUTH, or is closing): only then does delivery fail over to the next one.
   */
  open(options: OpenOptions): Promise<SmtpResult<TransportSession>>;
}
