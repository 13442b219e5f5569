// What a report sent back to a return path says, read from the parsed mail (postal-mime's shape): a
// delivery status notification (RFC 3464: multipart/report; report-type=delivery-status), a complaint
// (ARF, RFC 5965: report-type=feedback-report), or a bounce that is neither (plain text from an old MTA).
// Everything here is linear in the input and bounded: fields are cut, recipients capped, and nothing
// of a report's text leaves this module but what a recipient's outcome needs.

/** The parts of a parsed mail a report is read from (postal-mime's Email, with text attachments). */
export interface ParsedMail {
  headers: { key: string; value: string }[];
  text?: string;
  attachments: { mimeType: string; content: string | ArrayBuffer | Uint8Array }[];
}

export type ReportAction = "failed" | "delayed" | "delivered";

export interface ReportedRecipient {
  /**
   * Who the report may be about, most telling first: the Original-Recipient as written and xtext-decoded
   * (what Mailroom sent to; relays echo it either way), then the Final-Recipient. The first that is one of
   * the message's recipients is the one.
   */
  addresses: string[];
  action: ReportAction;
  /** The Action as the report gave it (relayed and expanded are read as delivered). */
  reportedAction: string;
  /** RFC 3463 status, e.g. 5.1.1. */
  status?: string;
  /** The remote MTA's own words, e.g. "smtp; 550 5.1.1 User unknown". */
  diagnostic?: string;
  /** The SMTP code in the diagnostic, when it is an smtp one. */
  smtpCode?: number;
}

export type Report =
  | { kind: "delivery_status"; envelopeId?: string; recipients: ReportedRecipient[] }
  | { kind: "complaint"; feedbackType: string; recipients: string[]; originalMessageId?: string }
  /** Feedback that is not a complaint: not-spam (RFC 6430), auth-failure (RFC 6591). Changes nothing. */
  | { kind: "not_a_complaint"; feedbackType: string }
  /** A bounce without a machine-readable report: its text, cut, to find which recipient it names. */
  | { kind: "undetermined"; text: string }
  /** Mail with no sign of being a bounce (an auto-reply, a person's answer): changes nothing. */
  | { kind: "not_a_report" };

/** RFC 5965 §3.1's complaint types (and "other"); not-spam and auth-failure are feedback, not complaints. */
const COMPLAINT_TYPES = new Set(["abuse", "fraud", "virus", "other"]);

/** The most recipients read from one report, bytes of a report part read, and characters kept of a field. */
export const MAX_REPORTED_RECIPIENTS = 100;
export const MAX_PART_CHARS = 256 * 1024;
const MAX_FIELD_CHARS = 1000;

const textOf = (content: string | ArrayBuffer | Uint8Array): string =>
  (typeof content === "string" ? content : new TextDecoder().decode(content instanceof Uint8Array ? content : new Uint8Array(content))).slice(0, MAX_PART_CHARS);

/**
 * Header-style fields in groups separated by blank lines (RFC 3464 §2.1; RFC 5965 §3.1): each group a list
 * of [lower-case name, value] with folded lines unfolded, values cut. One pass over the lines.
 */
export function fieldGroups(text: string): [string, string][][] {
  const groups: [string, string][][] = [];
  let group: [string, string][] = [];
  for (const raw of text.split("\n")) {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line.trim() === "") {
      if (group.length) groups.push(group);
      group = [];
      continue;
    }
    const last = group.at(-1);
    if ((line.startsWith(" ") || line.startsWith("\t")) && last) {
      if (last[1].length < MAX_FIELD_CHARS) last[1] = `${last[1]} ${line.trim()}`.slice(0, MAX_FIELD_CHARS);
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    group.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim().slice(0, MAX_FIELD_CHARS)]);
  }
  if (group.length) groups.push(group);
  return groups;
}

const field = (group: [string, string][], name: string) => group.find(([key]) => key === name)?.[1];

/** RFC 3461 §4: xtext's "+" and two upper-case hex digits, as some relays echo an ORCPT. */
export function decodeXtext(value: string): string {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const hex = value[i] === "+" ? value.slice(i + 1, i + 3) : "";
    if (hex.length === 2 && /^[0-9A-F]{2}$/.test(hex)) {
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else out += value[i];
  }
  return out;
}

/**
 * "rfc822; <Gone@Example.com>" → "Gone@Example.com"; undefined when it names no address. Final-Recipient and
 * Original-Rcpt-To are not xtext (RFC 3464 §2.3.2, RFC 5965): "+" is part of the address.
 */
export function addressOf(typed: string | undefined): string | undefined {
  if (!typed) return undefined;
  const semicolon = typed.indexOf(";");
  const type = semicolon < 0 ? "rfc822" : typed.slice(0, semicolon).trim().toLowerCase();
  let address = (semicolon < 0 ? typed : typed.slice(semicolon + 1)).trim();
  if (address.startsWith("<") && address.endsWith(">")) address = address.slice(1, -1).trim();
  if (type !== "rfc822" && type !== "utf-8") return undefined;
  const at = address.lastIndexOf("@");
  return at > 0 && at < address.length - 1 && !/\s/.test(address) ? address : undefined;
}

/** The first d.d.d of a Status field ("5.1.1 (bad mailbox)" → "5.1.1"), when it is one. */
function statusOf(value: string | undefined): string | undefined {
  const token = value?.trim().split(/\s/, 1)[0];
  return token && /^[245]\.\d{1,3}\.\d{1,3}$/.test(token) ? token : undefined;
}

/** The SMTP code of an "smtp;" diagnostic ("smtp; 550 5.1.1 …" → 550). */
function smtpCodeOf(diagnostic: string | undefined): number | undefined {
  if (!diagnostic) return undefined;
  const semicolon = diagnostic.indexOf(";");
  if (semicolon < 0 || diagnostic.slice(0, semicolon).trim().toLowerCase() !== "smtp") return undefined;
  const code = diagnostic.slice(semicolon + 1).trim().slice(0, 3);
  return /^[245]\d\d$/.test(code) ? Number(code) : undefined;
}

function actionOf(value: string): ReportAction | undefined {
  switch (value) {
    case "failed":
      return "failed";
    case "delayed":
      return "delayed";
    // "relayed" (to a system that sends no DSN) and "expanded" (to a list) are as far as the report goes: delivered.
    case "delivered":
    case "relayed":
    case "expanded":
      return "delivered";
    default:
      return undefined;
  }
}

/** The parameters of a Content-Type value, lower-case names (report-type, boundary…). */
function parameter(contentType: string, name: string): string | undefined {
  for (const part of contentType.split(";").slice(1)) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim().toLowerCase() === name) return part.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1").toLowerCase();
  }
  return undefined;
}

function readDeliveryStatus(text: string): Report {
  const groups = fieldGroups(text);
  const perMessage = groups.find((g) => field(g, "original-envelope-id") !== undefined || field(g, "reporting-mta") !== undefined);
  const recipients: ReportedRecipient[] = [];
  for (const group of groups) {
    if (recipients.length >= MAX_REPORTED_RECIPIENTS) break;
    const reportedAction = field(group, "action")?.trim().toLowerCase().split(/\s/, 1)[0] ?? "";
    const action = actionOf(reportedAction);
    const original = addressOf(field(group, "original-recipient"));
    const decoded = original && addressOf(decodeXtext(original));
    const addresses = [...new Set([original, decoded, addressOf(field(group, "final-recipient"))].filter((a): a is string => a !== undefined))];
    if (!action || addresses.length === 0) continue;
    const diagnostic = field(group, "diagnostic-code");
    const status = statusOf(field(group, "status"));
    recipients.push({ addresses, action, reportedAction, ...(status ? { status } : {}), ...(diagnostic ? { diagnostic } : {}), ...(smtpCodeOf(diagnostic) ? { smtpCode: smtpCodeOf(diagnostic) } : {}) });
  }
  const envelopeId = perMessage && field(perMessage, "original-envelope-id");
  return { kind: "delivery_status", ...(envelopeId ? { envelopeId: decodeXtext(envelopeId) } : {}), recipients };
}

/** The Message-ID in the headers of a returned message or its headers part. */
function messageIdIn(text: string): string | undefined {
  const [headers] = fieldGroups(text.slice(0, 64 * 1024));
  const id = headers && field(headers, "message-id");
  return id?.trim().split(/\s/, 1)[0];
}

function readFeedback(report: string, original: string | undefined): Report {
  const [fields = []] = fieldGroups(report);
  const recipients = fields
    .filter(([key]) => key === "original-rcpt-to")
    .map(([, value]) => addressOf(value))
    .filter((a): a is string => a !== undefined)
    .slice(0, MAX_REPORTED_RECIPIENTS);
  const originalMessageId = original === undefined ? undefined : messageIdIn(original);
  const feedbackType = (field(fields, "feedback-type") ?? "other").trim().toLowerCase().slice(0, 50);
  if (!COMPLAINT_TYPES.has(feedbackType)) return { kind: "not_a_complaint", feedbackType };
  return { kind: "complaint", feedbackType, recipients, ...(originalMessageId ? { originalMessageId } : {}) };
}

/**
 * Whether a mail without a report still looks like a bounce (RFC 3834 §4 sends auto-replies to the return
 * path too): from the null sender, from MAILER-DAEMON or postmaster, or naming its failed recipients.
 */
function looksLikeBounce(mail: ParsedMail, envelopeFrom: string): boolean {
  if (envelopeFrom === "" || envelopeFrom === "<>") return true;
  if (mail.headers.some((h) => h.key === "x-failed-recipients")) return true;
  const from = (mail.headers.find((h) => h.key === "from")?.value ?? "").toLowerCase();
  return from.includes("mailer-daemon@") || from.includes("postmaster@");
}

/**
 * What the mail reports. A multipart/report of another kind, or none at all, is an undetermined bounce when
 * it looks like one (`envelopeFrom`: the SMTP sender it came from), else not a report.
 */
export function readReport(mail: ParsedMail, envelopeFrom = ""): Report {
  const contentType = mail.headers.find((h) => h.key === "content-type")?.value ?? "";
  const reportType = contentType.toLowerCase().startsWith("multipart/report") ? parameter(contentType, "report-type") : undefined;
  const part = (type: string) => mail.attachments.find((a) => a.mimeType.toLowerCase() === type);
  const status = part("message/delivery-status") ?? part("message/global-delivery-status");
  if (reportType === "delivery-status" && status) return readDeliveryStatus(textOf(status.content));
  const feedback = part("message/feedback-report");
  if (reportType === "feedback-report" && feedback) {
    const original = part("message/rfc822") ?? part("text/rfc822-headers") ?? part("message/global");
    return readFeedback(textOf(feedback.content), original && textOf(original.content));
  }
  // Some MTAs send a delivery-status part without the report wrapper: still a DSN.
  if (status) return readDeliveryStatus(textOf(status.content));
  if (!looksLikeBounce(mail, envelopeFrom)) return { kind: "not_a_report" };
  return { kind: "undetermined", text: (mail.text ?? "").slice(0, MAX_PART_CHARS) };
}
