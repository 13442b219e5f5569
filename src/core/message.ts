// Turns a stored message into what goes out: the SMTP envelope and the RFC 5322 message, the same for
// every transport (SMTP dot-stuffs it on the wire; Cloudflare's binding takes it as it is).
// worker-mailer's Email composes the MIME body (multipart, quoted-printable); the address, subject and
// client headers are encoded here, and Bcc never reaches it (it would print a header).
import { Email } from "worker-mailer";
import type { Mailbox } from "./address";
import { attachmentPart, type Attachment } from "./attachments";
import { encodeAddressList, encodeClientHeader, encodeUnstructured } from "./header-encoding";

export interface OutgoingMessage {
  /** RFC 5322 Message-ID, angle brackets included; fixed at acceptance and reused on every attempt. */
  messageId: string;
  from: Mailbox;
  to: Mailbox[];
  cc: Mailbox[];
  /** Envelope only: never in a header. */
  bcc: Mailbox[];
  replyTo: Mailbox[];
  /** The client's own headers (validated: X-* and a short allowlist), written after Mailroom's. */
  headers: Record<string, string>;
  attachments: Attachment[];
  subject: string;
  text?: string;
  html?: string;
}

export interface Envelope {
  from: string;
  recipients: string[];
  /**
   * Delivery status notifications to ask for (RFC 3461), sent only to a relay that offers DSN: the
   * envelope id they carry back (ENVID), and when the relay should report (NOTIFY).
   */
  dsn?: { envelopeId: string; notify: ("SUCCESS" | "FAILURE" | "DELAY")[] };
}

/** Who the message goes to, each address once (to, cc and bcc alike): the recipients that get an outcome of their own. */
export function envelopeRecipients(message: Pick<OutgoingMessage, "to" | "cc" | "bcc">): string[] {
  return [...new Set([...message.to, ...message.cc, ...message.bcc].map((m) => m.address))];
}

/** The RFC 5322 message: CRLF line ends, ending in CRLF, not dot-stuffed. */
export function buildMime(message: OutgoingMessage, date: Date = new Date()): string {
  const headers: Record<string, string> = {
    From: encodeAddressList("From", [message.from]),
    To: encodeAddressList("To", message.to),
    Subject: encodeUnstructured("Subject", message.subject),
    Date: date.toUTCString().replace(/GMT$/, "+0000"),
    "Message-ID": message.messageId,
  };
  if (message.cc.length) headers.Cc = encodeAddressList("Cc", message.cc);
  if (message.replyTo.length) headers["Reply-To"] = encodeAddressList("Reply-To", message.replyTo);
  for (const [name, value] of Object.entries(message.headers)) headers[name] = encodeClientHeader(name, value);
  const email = new Email({
    from: message.from.address,
    to: message.to.map((m) => m.address),
    subject: message.subject,
    text: message.text,
    html: message.html,
    headers,
  });
  const data = undoDotStuffing(email.getEmailData());
  return message.attachments.length ? withAttachments(data, message.attachments) : data;
}

/** worker-mailer hands over its message as a DATA payload: dot-stuffed, ending in CRLF.CRLF. This is the message itself. */
function undoDotStuffing(payload: string): string {
  const stuffed = payload.slice(0, -".\r\n".length);
  return stuffed.replace(/^\.\./, ".").replace(/\r\n\.\./g, "\r\n.");
}

/** worker-mailer's message is always multipart/mixed: the attachments go in as further parts, before its closing boundary. */
function withAttachments(data: string, attachments: OutgoingMessage["attachments"]): string {
  const boundary = /^Content-Type: multipart\/mixed; boundary="([^"]+)"\r$/m.exec(data)?.[1];
  const closing = boundary === undefined ? -1 : data.lastIndexOf(`--${boundary}--\r\n`);
  if (boundary === undefined || closing < 0) throw new Error("the composed message has no multipart/mixed boundary to add attachments to");
  return data.slice(0, closing) + attachments.map((a) => attachmentPart(a, boundary)).join("") + data.slice(closing);
}

export function createMessageId(id: string, from: Mailbox): string {
  return `<${id}@${from.address.split("@")[1]}>`;
}
