// Pure SMTP reply handling (RFC 5321 §4.2): splitting the byte stream into lines and lines into
// replies, and reading EHLO capabilities. Kept apart from the socket code so it can be unit-tested.

export interface SmtpReply {
  code: number;
  /** RFC 3463 enhanced status code (e.g. "5.1.1"), when the server sent one. */
  enhancedCode?: string;
  /** The reply text, lines joined with "\n", without codes. */
  text: string;
  lines: string[];
}

/** RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF, or Reply-code "-" textstring for all but the last line. */
const REPLY_LINE = /^([2-5][0-9][0-9])(?:([ -])(.*))?$/;
const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)/;
/** A reply longer than this is not a reply: treat the peer as broken. */
export const MAX_REPLY_BYTES = 64 * 1024;

export class ReplyAssembler {
  private lines: string[] = [];
  private code = 0;

  /** Feeds one line; returns the finished reply after its last line, or an error string. */
  push(line: string): SmtpReply | { error: string } | undefined {
    const match = REPLY_LINE.exec(line);
    if (!match) return { error: `malformed reply line: ${JSON.stringify(line.slice(0, 80))}` };
    const code = Number(match[1]);
    if (this.lines.length > 0 && code !== this.code) return { error: "reply code changed inside a multi-line reply" };
    this.code = code;
    this.lines.push(match[3] ?? "");
    if (match[2] === "-") return undefined;
    const lines = this.lines;
    this.lines = [];
    const enhanced = ENHANCED.exec(lines[0] ?? "");
    return {
      code,
      enhancedCode: enhanced?.[1],
      text: lines.map((l) => (enhanced ? l.replace(ENHANCED, "") : l)).join("\n"),
      lines,
    };
  }
}

/** Splits decoded text into CRLF (or bare LF) terminated lines, keeping the unfinished rest. */
export class LineSplitter {
  private buffer = "";

  push(chunk: string): string[] {
    this.buffer += chunk;
    const parts = this.buffer.split("\n");
    this.buffer = parts.pop()!;
    return parts.map((line) => (line.endsWith("\r") ? line.slice(0, -1) : line));
  }

  get pending(): number {
    return this.buffer.length;
  }

  /** The unfinished rest, as received so far. */
  peek(): string {
    return this.buffer;
  }
}

export interface Capabilities {
  keywords: Set<string>;
  authMechanisms: Set<string>;
}

/** Reads the EHLO reply: the first line greets, each further line names one extension. */
export function parseCapabilities(reply: SmtpReply): Capabilities {
  const keywords = new Set<string>();
  const authMechanisms = new Set<string>();
  for (const line of reply.lines.slice(1)) {
    const [keyword = "", ...params] = line.trim().toUpperCase().split(/[\s=]+/);
    if (!keyword) continue;
    keywords.add(keyword);
    if (keyword === "AUTH") params.forEach((p) => authMechanisms.add(p));
  }
  return { keywords, authMechanisms };
}
