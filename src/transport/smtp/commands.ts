// The text of an SMTP transaction, without a socket: MAIL and RCPT lines with their DSN parameters
// (RFC 3461), xtext, the dot-stuffed DATA payload (RFC 5321 §4.5.2), AUTH's base64, and a reply as the
// report of one recipient.
import type { Envelope } from "../../core/message";
import type { RecipientReply } from "../transport";
import type { SmtpReply } from "./reply";

const encoder = new TextEncoder();

/** RFC 3461 §4: xtext, for ENVID and ORCPT values: printable ASCII but "+" and "=", the rest as +HH. */
export function xtext(value: string): string {
  let out = "";
  for (const byte of encoder.encode(value)) out += byte >= 0x21 && byte <= 0x7e && byte !== 0x2b && byte !== 0x3d ? String.fromCharCode(byte) : `+${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  return out;
}

/**
 * The DATA payload for a message (RFC 5322, ending in CRLF): a line starting with "." gets one more
 * (RFC 5321 §4.5.2), then the final dot.
 */
export function dataPayload(message: string): string {
  const stuffed = message.replace(/^\./, "..").replace(/\r\n\./g, "\r\n..");
  return `${stuffed.endsWith("\r\n") ? stuffed : `${stuffed}\r\n`}.\r\n`;
}

/** AUTH's encoding of a UTF-8 string. */
export function base64(text: string): string {
  return btoa(String.fromCharCode(...encoder.encode(text)));
}

/** MAIL FROM, with RET=HDRS (a report carries the headers, never the content) and ENVID when the relay offers DSN and they are asked for. */
export function mailLine(envelope: Envelope, dsn: boolean): string {
  const parameters = dsn && envelope.dsn ? ` RET=HDRS ENVID=${xtext(envelope.dsn.envelopeId)}` : "";
  return `MAIL FROM:<${envelope.from}>${parameters}`;
}

/** RCPT TO, with NOTIFY and the original recipient (ORCPT; ASCII addresses only) when the relay offers DSN and they are asked for. */
export function rcptLine(envelope: Envelope, recipient: string, dsn: boolean): string {
  if (!dsn || !envelope.dsn) return `RCPT TO:<${recipient}>`;
  // RFC 3461 §4.2: ORCPT's type is rfc822 for an ASCII address (UTF-8 ones, RFC 6533, are left without).
  const orcpt = /^[\x21-\x7e]+$/.test(recipient) ? ` ORCPT=rfc822;${xtext(recipient)}` : "";
  return `RCPT TO:<${recipient}> NOTIFY=${envelope.dsn.notify.join(",")}${orcpt}`;
}

export function recipientReply(recipient: string, command: string, reply: SmtpReply): RecipientReply {
  return { recipient, code: reply.code, enhanced_code: reply.enhancedCode, reply: reply.text, command };
}
