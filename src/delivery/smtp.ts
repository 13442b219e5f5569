// Mailroom's SMTP client on cloudflare:sockets: one session to the relay, reused for several mails.
// Every read and write has a deadline and a closed stream is an error, so a dead or silent relay costs
// one timeout, never a hung isolate. STARTTLS is required when configured: credentials never go out
// in plaintext. Results are structured ({code, enhanced_code, reply, command}), never thrown strings.
import { connect } from "cloudflare:sockets";
import type { Config } from "../config";
import type { Envelope } from "../core/message";
import { LineSplitter, MAX_REPLY_BYTES, parseCapabilities, ReplyAssembler, type Capabilities, type SmtpReply } from "./smtp-reply";

export type SmtpOptions = Config["smtp"];

/** Where a failure happened: "session" stages concern the relay, "message" stages concern one mail. */
export type SmtpStage = "connect" | "greeting" | "ehlo" | "starttls" | "auth" | "mail" | "rcpt" | "data" | "message";

export type SmtpFailureKind = "connection" | "timeout" | "tls" | "auth" | "protocol" | "reply";

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

export interface RejectedRecipient {
  recipient: string;
  code: number;
  enhanced_code?: string;
  reply: string;
}

export interface SmtpAccepted {
  code: number;
  enhanced_code?: string;
  reply: string;
  /** Recipients the relay refused permanently while it accepted the others. */
  rejected: RejectedRecipient[];
}

export type SmtpResult<T> = { ok: true; value: T } | { ok: false; failure: SmtpFailure };

class SmtpFailed extends Error {
  constructor(readonly failure: SmtpFailure) {
    super(failure.message);
  }
}

const encoder = new TextEncoder();
/** RFC 5321 §4.5.3.2.6: wait up to 10 minutes for the reply to the final ".", since giving up early
 * while the relay still accepts the mail is how duplicates happen. */
const DATA_END_TIMEOUT_MS = 10 * 60 * 1000;

function base64(text: string): string {
  return btoa(String.fromCharCode(...encoder.encode(text)));
}

export class SmtpSession {
  private reader!: ReadableStreamDefaultReader<Uint8Array>;
  private writer!: WritableStreamDefaultWriter<Uint8Array>;
  private decoder = new TextDecoder();
  private lines = new LineSplitter();
  private pendingLines: string[] = [];
  private broken = false;

  private constructor(
    private socket: Socket,
    private readonly options: SmtpOptions,
  ) {
    this.attachStreams();
  }

  /** Connects, greets, negotiates TLS and authenticates; the session is then ready for send(). */
  static async open(options: SmtpOptions): Promise<SmtpResult<SmtpSession>> {
    let session: SmtpSession | undefined;
    try {
      const socket = connect(
        { hostname: options.host, port: options.port },
        { secureTransport: options.security === "tls" ? "on" : options.security === "starttls" ? "starttls" : "off", allowHalfOpen: false },
      );
      session = new SmtpSession(socket, options);
      await session.withDeadline(socket.opened, "connect", `CONNECT ${options.host}:${options.port}`);
      await session.handshake();
      return { ok: true, value: session };
    } catch (error) {
      session?.abort();
      return { ok: false, failure: toFailure(error, "connect", "CONNECT") };
    }
  }

  /** True once the connection can no longer be used (dropped, timed out, out of sync). */
  get isBroken(): boolean {
    return this.broken;
  }

  /**
   * One mail transaction: MAIL FROM, RCPT TO for each recipient, DATA. `data` must be dot-stuffed and
   * end in CRLF.CRLF. Recipients refused permanently are reported while the others get the mail; a
   * temporary refusal of any recipient postpones the whole message, so nobody is skipped for good.
   */
  async send(envelope: Envelope, data: string): Promise<SmtpResult<SmtpAccepted>> {
    if (this.broken) {
      return { ok: false, failure: { kind: "connection", stage: "mail", command: "MAIL FROM", message: "session is closed" } };
    }
    try {
      await this.expect(`MAIL FROM:<${envelope.from}>`, 250, "mail");
      const rejected: { recipient: string; reply: SmtpReply; command: string }[] = [];
      for (const recipient of envelope.recipients) {
        const command = `RCPT TO:<${recipient}>`;
        const reply = await this.command(command, "rcpt");
        if (reply.code !== 250 && reply.code !== 251) rejected.push({ recipient, reply, command });
      }
      const temporary = rejected.find((r) => r.reply.code < 500);
      if (temporary || rejected.length === envelope.recipients.length) {
        const first = temporary ?? rejected[0]!;
        throw new SmtpFailed(replyFailure(first.reply, "rcpt", first.command));
      }
      await this.expect("DATA", 354, "data");
      await this.write(data, "message", "(message content)");
      const reply = await this.readReply("message", "(end of data)", Math.max(this.options.timeoutMs, DATA_END_TIMEOUT_MS));
      if (reply.code !== 250) throw new SmtpFailed(replyFailure(reply, "message", "(end of data)"));
      return {
        ok: true,
        value: {
          code: reply.code,
          enhanced_code: reply.enhancedCode,
          reply: reply.text,
          rejected: rejected.map((r) => ({ recipient: r.recipient, code: r.reply.code, enhanced_code: r.reply.enhancedCode, reply: r.reply.text })),
        },
      };
    } catch (error) {
      const failure = toFailure(error, "mail", "MAIL FROM");
      // 421: the relay is closing the channel (RFC 5321 §3.8); anything else leaves it usable after RSET.
      if (failure.code === 421) this.abort();
      if (failure.kind === "reply" && !this.broken) await this.reset();
      return { ok: false, failure };
    }
  }

  /** Says QUIT and closes; never throws. */
  async close(): Promise<void> {
    if (!this.broken) {
      try {
        await this.expect("QUIT", 221, "mail");
      } catch {
        // The relay may drop the connection right after QUIT; nothing is lost either way.
      }
    }
    this.abort();
  }

  private async handshake(): Promise<void> {
    const greeting = await this.readReply("greeting", "(greeting)");
    if (greeting.code !== 220) throw new SmtpFailed(replyFailure(greeting, "greeting", "(greeting)"));
    let capabilities = await this.ehlo();
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
      // Anything already received was sent before TLS and could be injected (RFC 3207 §4.2, §6).
      if (this.pendingLines.length > 0 || this.lines.pending > 0) {
        this.fail({ kind: "tls", stage: "starttls", command: "STARTTLS", message: "the server sent data after its STARTTLS reply; refusing to continue" });
      }
      this.reader.releaseLock();
      this.writer.releaseLock();
      this.socket = this.socket.startTls();
      this.attachStreams();
      this.decoder = new TextDecoder();
      this.lines = new LineSplitter();
      capabilities = await this.ehlo();
    }
    if (this.options.user !== undefined) await this.authenticate(capabilities);
  }

  private async ehlo(): Promise<Capabilities> {
    const reply = await this.command(`EHLO ${this.options.heloName}`, "ehlo");
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
      this.abort();
    }
  }

  private async expect(line: string, expected: number | number[], stage: SmtpStage, shownAs?: string): Promise<SmtpReply> {
    const shown = shownAs ?? line;
    const reply = await this.command(line, stage, shown);
    const accepted = Array.isArray(expected) ? expected.includes(reply.code) : reply.code === expected;
    if (!accepted) {
      const failure = replyFailure(reply, stage, shown);
      if (stage === "auth") failure.kind = "auth";
      throw new SmtpFailed(failure);
    }
    return reply;
  }

  private async command(line: string, stage: SmtpStage, shownAs = line): Promise<SmtpReply> {
    if (/[\r\n]/.test(line)) {
      this.fail({ kind: "protocol", stage, command: shownAs.split(" ")[0]!, message: "refusing to send a command containing a line break" });
    }
    await this.write(`${line}\r\n`, stage, shownAs);
    return this.readReply(stage, shownAs);
  }

  private async write(text: string, stage: SmtpStage, command: string): Promise<void> {
    await this.withDeadline(this.writer.write(encoder.encode(text)), stage, command);
  }

  /** Reads one whole reply; the deadline covers all of it, however slowly the bytes trickle in. */
  private async readReply(stage: SmtpStage, command: string, timeoutMs = this.options.timeoutMs): Promise<SmtpReply> {
    const deadline = Date.now() + timeoutMs;
    const assembler = new ReplyAssembler();
    let bytes = 0;
    for (;;) {
      const line = this.pendingLines.shift();
      if (line !== undefined) {
        const result = assembler.push(line);
        if (result && "error" in result) this.fail({ kind: "protocol", stage, command, message: result.error });
        if (result) return result;
        continue;
      }
      const chunk = await this.withDeadline(this.reader.read(), stage, command, deadline - Date.now(), timeoutMs);
      if (chunk.done) this.fail({ kind: "connection", stage, command, message: `connection closed by the server while waiting for the reply to ${command}` });
      bytes += chunk.value.byteLength;
      if (bytes > MAX_REPLY_BYTES) this.fail({ kind: "protocol", stage, command, message: "reply too long" });
      this.pendingLines.push(...this.lines.push(this.decoder.decode(chunk.value, { stream: true })));
    }
  }

  private async withDeadline<T>(promise: Promise<T>, stage: SmtpStage, command: string, remainingMs = this.options.timeoutMs, totalMs = remainingMs): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SmtpFailed({ kind: "timeout", stage, command, message: `no answer to ${command} within ${totalMs} ms` })),
        Math.max(remainingMs, 0),
      );
    });
    try {
      return await Promise.race([promise, deadline]);
    } catch (error) {
      this.abort();
      if (error instanceof SmtpFailed) throw error;
      throw new SmtpFailed(socketFailure(error, stage, command));
    } finally {
      clearTimeout(timer);
    }
  }

  private fail(failure: SmtpFailure): never {
    this.abort();
    throw new SmtpFailed(failure);
  }

  private attachStreams(): void {
    this.reader = this.socket.readable.getReader();
    this.writer = this.socket.writable.getWriter();
  }

  private abort(): void {
    if (this.broken) return;
    this.broken = true;
    this.socket.close().catch(() => {});
  }
}

function replyFailure(reply: SmtpReply, stage: SmtpStage, command: string): SmtpFailure {
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

function socketFailure(error: unknown, stage: SmtpStage, command: string): SmtpFailure {
  const message = error instanceof Error ? error.message : String(error);
  const tls = /tls|ssl|certificate|handshake/i.test(message);
  return { kind: tls ? "tls" : "connection", stage, command, message: `${tls ? "TLS" : "connection"} error: ${message}` };
}

function toFailure(error: unknown, stage: SmtpStage, command: string): SmtpFailure {
  if (error instanceof SmtpFailed) return error.failure;
  return socketFailure(error, stage, command);
}
