// The transport under the SMTP session: a socket from cloudflare:sockets that writes lines and reads
// whole replies, each under a deadline (and never past the attempt's own deadline). A closed stream, a
// timeout, garbage or a reply nobody asked for is a structured failure (SmtpFailed) and leaves the
// connection closed, so nothing above can hang or spin on a dead relay, or read a stray reply as an answer.
import { connect } from "cloudflare:sockets";
import type { SmtpSecurity } from "../../config";
import { replyFailure, type SmtpFailure, type SmtpStage } from "../transport";
import { LineSplitter, MAX_REPLY_BYTES, ReplyAssembler, type SmtpReply } from "./reply";

export class SmtpFailed extends Error {
  constructor(readonly failure: SmtpFailure) {
    super(failure.message);
  }
}

const encoder = new TextEncoder();
/** setTimeout takes a 32-bit delay; anything longer fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class SmtpConnection {
  private reader!: ReadableStreamDefaultReader<Uint8Array>;
  private writer!: WritableStreamDefaultWriter<Uint8Array>;
  private decoder = new TextDecoder();
  private lines = new LineSplitter();
  private pendingLines: string[] = [];
  private closed = false;
  /**
   * Between the start of TLS (connecting with implicit TLS, or STARTTLS) and the first bytes read over it:
   * a socket error then is the handshake failing, as it does for a certificate that is not trusted or
   * names another host (the runtime reports those only as an "internal error").
   */
  private handshaking = false;
  /** Epoch ms after which no wait may last: the deadline of the attempt using the connection. */
  private attemptDeadline = Infinity;

  private constructor(
    private socket: Socket,
    private readonly timeoutMs: number,
    /** SMTP_HOST and SMTP_PORT: the runtime's errors may quote them; what API clients read says "the relay" instead. */
    private readonly relay: { host: string; port: number },
  ) {
    this.attachStreams();
  }

  /**
   * Opens the TCP (or, for "tls", TLS) connection; "starttls" leaves it ready for upgradeToTls().
   * No wait on it lasts past `deadline` (epoch ms) until limitWaitsTo() says otherwise.
   */
  static async open(options: { host: string; port: number; security: SmtpSecurity; timeoutMs: number }, deadline = Infinity): Promise<SmtpConnection> {
    const secureTransport = options.security === "tls" ? "on" : options.security === "starttls" ? "starttls" : "off";
    const connection = new SmtpConnection(connect({ hostname: options.host, port: options.port }, { secureTransport, allowHalfOpen: false }), options.timeoutMs, { host: options.host, port: options.port });
    connection.handshaking = secureTransport === "on";
    connection.limitWaitsTo(deadline);
    await connection.withDeadline(connection.socket.opened, "connect", "CONNECT to the relay");
    return connection;
  }

  /** True once the connection can no longer be used (dropped, timed out, out of sync). */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether the server sent anything beyond the replies read so far. */
  get hasUnreadData(): boolean {
    return this.pendingLines.length > 0 || this.lines.pending > 0;
  }

  /** Caps every later wait (connect, write, reply) at `epochMs`, e.g. so an attempt ends before its claim. */
  limitWaitsTo(epochMs: number): void {
    this.attemptDeadline = epochMs;
  }

  /** Sends one command line (shown in failures as `shownAs`, to keep secrets out) and reads its reply. */
  async command(line: string, stage: SmtpStage, shownAs = line): Promise<SmtpReply> {
    await this.writeLines([line], stage, shownAs);
    return this.readReply(stage, shownAs);
  }

  /** A command whose reply must be `expected`; any other reply is a failure (of kind "auth" during AUTH). */
  async expect(line: string, expected: number, stage: SmtpStage, shownAs = line): Promise<SmtpReply> {
    const reply = await this.command(line, stage, shownAs);
    if (reply.code !== expected) throw new SmtpFailed({ ...replyFailure(reply, stage, shownAs), ...(stage === "auth" ? { kind: "auth" as const } : {}) });
    return reply;
  }

  /** Sends command lines in one write (RFC 2920 PIPELINING); the caller reads their replies, in order. */
  async writeLines(lines: string[], stage: SmtpStage, shownAs = lines.join(", ")): Promise<void> {
    const broken = lines.find((line) => /[\r\n]/.test(line));
    if (broken !== undefined) {
      this.fail({ kind: "protocol", stage, command: broken.split(" ")[0]!, message: "refusing to send a command containing a line break" });
    }
    await this.write(lines.map((line) => `${line}\r\n`).join(""), stage, shownAs);
  }

  /**
   * Writes a command, the message body or its final dot. Anything the server sent that was not read
   * as a reply yet arrived before this was sent, so it cannot be its reply (RFC 5321 §4.1.1: replies
   * answer commands, in order): the session ends as a protocol error rather than read it as one.
   */
  async write(text: string, stage: SmtpStage, command: string): Promise<void> {
    if (this.hasUnreadData) {
      const stray = JSON.stringify((this.pendingLines[0] ?? this.lines.peek()).slice(0, 80));
      this.fail({ kind: "protocol", stage, command, message: `the server sent a reply nobody asked for (${stray}) before ${command}; closing the session` });
    }
    await this.withDeadline(this.writer.write(encoder.encode(text)), stage, command);
  }

  /** Reads one whole reply; the deadline covers all of it, however slowly the bytes trickle in. */
  async readReply(stage: SmtpStage, command: string, timeoutMs = this.timeoutMs): Promise<SmtpReply> {
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
      this.handshaking = false;
      if (chunk.done) this.fail({ kind: "connection", stage, command, message: `connection closed by the server while waiting for the reply to ${command}` });
      bytes += chunk.value.byteLength;
      if (bytes > MAX_REPLY_BYTES) this.fail({ kind: "protocol", stage, command, message: "reply too long" });
      this.pendingLines.push(...this.lines.push(this.decoder.decode(chunk.value, { stream: true })));
    }
  }

  /** After the server's 220 to STARTTLS: switch the socket to TLS, refusing any plaintext left over. */
  upgradeToTls(): void {
    // Anything already received was sent before TLS and could be injected (RFC 3207 §4.2, §6).
    if (this.pendingLines.length > 0 || this.lines.pending > 0) {
      this.fail({ kind: "tls", stage: "starttls", command: "STARTTLS", message: "the server sent data after its STARTTLS reply; refusing to continue" });
    }
    this.reader.releaseLock();
    this.writer.releaseLock();
    this.socket = this.socket.startTls();
    this.handshaking = true;
    this.attachStreams();
    this.decoder = new TextDecoder();
    this.lines = new LineSplitter();
  }

  /** Closes the socket and throws the failure. */
  fail(failure: SmtpFailure): never {
    this.close();
    throw new SmtpFailed(failure);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close().catch(() => {});
  }

  private async withDeadline<T>(promise: Promise<T>, stage: SmtpStage, command: string, remainingMs = this.timeoutMs, totalMs = remainingMs): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const attemptLeftMs = this.attemptDeadline - Date.now();
    const message =
      attemptLeftMs < remainingMs
        ? `no answer to ${command} before the attempt's deadline (its claim on the message would expire)`
        : `no answer to ${command} within ${totalMs} ms`;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SmtpFailed({ kind: "timeout", stage, command, message })), Math.min(Math.max(Math.min(remainingMs, attemptLeftMs), 0), MAX_TIMER_MS));
    });
    try {
      return await Promise.race([promise, deadline]);
    } catch (error) {
      this.close();
      if (error instanceof SmtpFailed) throw error;
      const failure = this.handshaking ? tlsHandshakeFailure(error, stage, command) : socketFailure(error, stage, command);
      throw new SmtpFailed({ ...failure, message: hideRelay(failure.message, this.relay) });
    } finally {
      clearTimeout(timer);
    }
  }

  private attachStreams(): void {
    this.reader = this.socket.readable.getReader();
    this.writer = this.socket.writable.getWriter();
  }
}


function socketFailure(error: unknown, stage: SmtpStage, command: string): SmtpFailure {
  const message = error instanceof Error ? error.message : String(error);
  const tls = /tls|ssl|certificate|handshake/i.test(message);
  return { kind: tls ? "tls" : "connection", stage, command, message: `${tls ? "TLS" : "connection"} error: ${message}` };
}

function tlsHandshakeFailure(error: unknown, stage: SmtpStage, command: string): SmtpFailure {
  const message = error instanceof Error ? error.message : String(error);
  return {
    kind: "tls",
    stage,
    command,
    message: `TLS error: the TLS handshake with the relay failed, so nothing was sent (is its certificate trusted, and does it name SMTP_HOST?): ${message}`,
  };
}

/** `host:port`, and `host` where it stands as a name of its own (not inside a longer word, as "mx" in "mxtoolbox"), as "the relay". */
function hideRelay(message: string, { host, port }: { host: string; port: number }): string {
  const isNameChar = (char: string | undefined) => char !== undefined && /[A-Za-z0-9.-]/.test(char);
  const parts = message.replaceAll(`${host}:${port}`, "the relay").split(host);
  return parts.reduce((out, part, i) => (i === 0 ? part : isNameChar(out.at(-1)) || isNameChar(part[0]) ? `${out}${host}${part}` : `${out}the relay${part}`), "");
}

/** Any error from below as an SmtpFailure: ours as they are, the runtime's as connection/TLS errors. */
export function toFailure(error: unknown, stage: SmtpStage, command: string): SmtpFailure {
  return error instanceof SmtpFailed ? error.failure : socketFailure(error, stage, command);
}
