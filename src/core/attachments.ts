// Attachments as MIME parts (RFC 2045/2046/2183): base64 content in 76-character lines, the file name
// as a quoted string when it is plain ASCII and per RFC 2231 (UTF-8, percent-encoded, continued over
// several lines when long) when it is not, so no name can break a header or exceed a line. worker-mailer
// writes names raw into quoted parameters, so Mailroom writes these parts itself.

export interface Attachment {
  filename: string;
  /** base64, as the client sent it (validated). */
  content: string;
  contentType?: string;
  /** For inline images referenced as cid:… from the HTML. */
  contentId?: string;
}

const TYPES: Record<string, string> = {
  pdf: "application/pdf",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  svg: "image/svg+xml",
  webp: "image/webp",
  txt: "text/plain",
  csv: "text/csv",
  html: "text/html",
  ics: "text/calendar",
  json: "application/json",
  zip: "application/zip",
};

/** The attachment's type: as given, else from the file name's extension, else application/octet-stream. */
export function attachmentType({ filename, contentType }: Pick<Attachment, "filename" | "contentType">): string {
  return contentType ?? TYPES[filename.split(".").pop()?.toLowerCase() ?? ""] ?? "application/octet-stream";
}

/** A quoted-string's characters (RFC 5322 qtext plus space), short enough for one line. */
const PLAIN_NAME = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,60}$/;
const SEGMENT = 60;

/** `name="…"`, or `name*=UTF-8''…` (RFC 2231 §4), split into `name*0*=…; name*1*=…` when long (§3). */
function parameter(name: string, value: string): string {
  if (PLAIN_NAME.test(value)) return `${name}="${value}"`;
  const encoded = [...new TextEncoder().encode(value)]
    .map((b) => (/[A-Za-z0-9!#$&+.^_`|~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, "0")}`))
    .join("");
  const segments: string[] = [];
  for (let rest = encoded; rest.length > 0; ) {
    let cut = Math.min(SEGMENT, rest.length);
    if (rest.lastIndexOf("%", cut - 1) > cut - 3) cut = rest.lastIndexOf("%", cut - 1); // never split a %XX
    segments.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  if (segments.length === 1) return `${name}*=UTF-8''${segments[0]}`;
  return segments.map((segment, i) => `${name}*${i}*=${i === 0 ? "UTF-8''" : ""}${segment}`).join(";\r\n ");
}

/** One attachment as a body part of a multipart/mixed message, ending in CRLF. */
export function attachmentPart(attachment: Attachment, boundary: string): string {
  const disposition = attachment.contentId ? "inline" : "attachment";
  const lines = [
    `--${boundary}`,
    `Content-Type: ${attachmentType(attachment)};\r\n ${parameter("name", attachment.filename)}`,
    `Content-Disposition: ${disposition};\r\n ${parameter("filename", attachment.filename)}`,
    ...(attachment.contentId ? [`Content-ID: <${attachment.contentId}>`] : []),
    "Content-Transfer-Encoding: base64",
    "",
    ...(attachment.content.match(/.{1,76}/g) ?? []),
    "",
  ];
  return lines.join("\r\n") + "\r\n";
}

/**
 * Whether `text` is base64 with its padding (RFC 4648 §4), no line breaks. A test over the whole string
 * and its length, not a repeated group: a backtracking regex runs out of stack on megabytes.
 */
export function isBase64(text: string): boolean {
  return text.length % 4 === 0 && /^[A-Za-z0-9+/]*={0,2}$/.test(text);
}

/** How many bytes base64 text decodes to (it has been validated as base64). */
function decodedSize(base64: string): number {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  return (base64.length / 4) * 3 - padding;
}

/** The attachments' size in all, decoded: what the limit and the R2 threshold count. */
export function attachmentBytes(attachments: Pick<Attachment, "content">[]): number {
  return attachments.reduce((sum, a) => sum + decodedSize(a.content), 0);
}
