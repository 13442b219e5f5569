// The email() handler: reports that Email Routing delivers to the bounce address. Mail to any other
// address is refused. A report counts only if its return path's token verifies (it names the message, and
// only Mailroom can make one) and the recipients it reports are that message's: anything else changes
// nothing and is logged (never its text). Parsed with postal-mime, with limits on size and nesting; no
// attachment is kept. When recording fails (D1), the handler throws, so the sending MTA tries again later.
import PostalMime from "postal-mime";
import type { Config } from "../config";
import { readReport, type Report, type ReportedRecipient } from "../core/reports";
import { envelopeIdFor, readReturnPath } from "../core/return-path";
import type { Logger } from "../log";
import { recipientsOf, recordReport, type RecipientReport } from "../store/reports";
import { enqueueWebhookEvents, type WebhookJob } from "./webhooks";

export interface ReportContext {
  db: D1Database;
  webhooks: Queue<WebhookJob>;
  config: Config | undefined;
  log: Logger;
}

/** The largest report read; a DSN with the returned headers is a few KiB. */
export const MAX_REPORT_BYTES = 1024 * 1024;
const PARSE_LIMITS = { maxNestingDepth: 16, maxHeadersSize: 256 * 1024, maxRfc822NestingDepth: 2 } as const;

export async function handleReport(message: ForwardableEmailMessage, { db, webhooks, config, log: baseLog }: ReportContext): Promise<void> {
  const log = baseLog.child({ recipient: message.to });
  if (!config) throw new Error("the settings cannot be read; the report is left for the sending MTA to retry");
  if (!config.bounce) {
    message.setReject("5.1.1 this address does not accept mail");
    log.warn("mail refused: no BOUNCE_ADDRESS is set", { outcome: "rejected" });
    return;
  }
  const path = await readReturnPath(message.to, { bounceAddress: config.bounce.address, secret: config.bounce.secret });
  if (!path.ok) {
    if (path.reason === "not_the_bounce_address") {
      message.setReject("5.1.1 no such mailbox");
      log.warn("mail refused: not to the bounce address", { outcome: "rejected" });
    } else log.warn("report ignored: its return path does not verify", { outcome: "ignored", reason: path.reason });
    return;
  }
  const reportLog = log.child({ email_id: path.messageId });
  if (message.rawSize > MAX_REPORT_BYTES) {
    message.setReject(`5.3.4 reports are at most ${MAX_REPORT_BYTES} bytes`);
    reportLog.warn("report refused: too large", { outcome: "rejected", bytes: message.rawSize });
    return;
  }
  const report = await readAtMost(message.raw, MAX_REPORT_BYTES).then((raw) => parseReportMail(raw, message.from), () => undefined);
  if (!report) {
    reportLog.warn("report ignored: it cannot be read", { outcome: "ignored", reason: "unreadable" });
    return;
  }
  if (report.kind === "not_a_report" || report.kind === "not_a_complaint") {
    // An auto-reply to the return path, or feedback that is not a complaint (not-spam, auth-failure).
    reportLog.info("mail to a return path ignored: it reports nothing", { outcome: "ignored", reason: report.kind });
    return;
  }
  // The ENVID is derived from the id under the secret and is in no header a recipient sees: a DSN that
  // carries it came through the relay. One that carries another is not about this message.
  const envelopeId = await envelopeIdFor(path.messageId, config.bounce.secret);
  const envelopeIdVerified = report.kind === "delivery_status" && report.envelopeId?.toLowerCase() === envelopeId;
  if (report.kind === "delivery_status" && report.envelopeId !== undefined && !envelopeIdVerified) {
    reportLog.warn("report ignored: its envelope id is not the message its return path names", { outcome: "ignored", reason: "envelope_id_mismatch" });
    return;
  }
  const known = await recipientsOf(db, path.messageId);
  if (known.length === 0) {
    reportLog.warn("report ignored: no such message", { outcome: "ignored", reason: "unknown_message" });
    return;
  }
  const { attributed, unattributed } = attribute(report, known.map((r) => r.address));
  if (attributed.length === 0) {
    reportLog.warn("report ignored: it names none of the message's recipients", { outcome: "ignored", reason: "not_the_message_recipients", kind: report.kind, unattributed });
    return;
  }
  const notYetSent = (address: string) => {
    const status = known.find((k) => k.address === address)?.status;
    return status === "pending" || status === "deferred";
  };
  if (attributed.some((r) => notYetSent(r.address))) {
    // Sooner than Mailroom knows the relay took the mail: the attempt's record is not written yet (a chunk is
    // written once its last mail is done), or the relay's reply to the final dot was lost and the recipient
    // waits for its next attempt. Recorded now, it would change nothing and its digest would make the same
    // report a duplicate later: the sending MTA tries again in a few minutes instead, when it can apply.
    throw new Error("the report is about a recipient Mailroom has not recorded as sent yet; try again later");
  }
  // Every recipient sees the return path: in a mail to several, one could report on another. Only a DSN
  // with the secret ENVID, or a mail to one recipient, may put an address on the suppression list.
  const suppress = known.length === 1 || envelopeIdVerified;
  const at = new Date().toISOString();
  const { recorded, webhookEvents } = await recordReport(db, { messageId: path.messageId, digest: await digestOf(report.kind, attributed), kind: report.kind, at, recipients: attributed, suppress });
  await enqueueWebhookEvents(webhooks, webhookEvents, reportLog);
  reportLog.info(recorded ? "report recorded" : "report already recorded; nothing changed", {
    outcome: recorded ? "recorded" : "duplicate",
    kind: report.kind,
    outcomes: attributed.map((r) => r.outcome).join(","),
    unattributed,
  });
}

/** What a raw report says; undefined when it cannot be parsed within the limits. Never throws. */
export async function parseReportMail(raw: Uint8Array, envelopeFrom = ""): Promise<Report | undefined> {
  try {
    return readReport(await PostalMime.parse(raw, { attachmentEncoding: "utf8", rfc822Attachments: true, ...PARSE_LIMITS }), envelopeFrom);
  } catch {
    return undefined;
  }
}

/** The report's outcomes for the message's own recipients, and how many it named that are not. */
export function attribute(report: Report, recipients: string[]): { attributed: RecipientReport[]; unattributed: number } {
  const ours = new Map(recipients.map((address) => [address.toLowerCase(), address]));
  switch (report.kind) {
    case "not_a_report":
    case "not_a_complaint":
      return { attributed: [], unattributed: 0 };
    case "delivery_status": {
      const attributed = report.recipients.flatMap((r) => {
        const address = r.addresses.map((a) => ours.get(a.toLowerCase())).find((a) => a !== undefined);
        return address ? [dsnOutcome(address, r)] : [];
      });
      return { attributed, unattributed: report.recipients.length - attributed.length };
    }
    case "complaint": {
      // Providers often leave the recipient out of the report: then it can only be a single-recipient message's.
      const named = report.recipients.length > 0 ? report.recipients : recipients.length === 1 ? recipients : [];
      const attributed = named.flatMap((a) => {
        const address = ours.get(a.toLowerCase());
        return address ? [{ address, outcome: "complained" as const, detail: `complaint (feedback type ${report.feedbackType})` }] : [];
      });
      return { attributed, unattributed: named.length - attributed.length };
    }
    case "undetermined": {
      const text = report.text.toLowerCase();
      const named = recipients.length === 1 ? recipients : recipients.filter((a) => namesAddress(text, a.toLowerCase()));
      const attributed = named.length === 1 ? [{ address: named[0]!, outcome: "undetermined" as const, detail: "a bounce without a delivery status report (undetermined)" }] : [];
      return { attributed, unattributed: attributed.length ? 0 : named.length };
    }
  }
}

/** Characters that continue an address: one found inside a longer one (bob@ in jimbob@) is not named. */
const ADDRESS_CHAR = /[a-z0-9._%+\-]/;

/** Whether lower-case `text` names `address` as a whole address: linear, one indexOf pass. */
function namesAddress(text: string, address: string): boolean {
  for (let at = text.indexOf(address); at >= 0; at = text.indexOf(address, at + 1)) {
    const before = text[at - 1] ?? " ";
    const after = text[at + address.length] ?? " ";
    const next = text[at + address.length + 1] ?? " ";
    if (!ADDRESS_CHAR.test(before) && !/[a-z0-9-]/.test(after) && !(after === "." && /[a-z0-9]/.test(next))) return true;
  }
  return false;
}

function dsnOutcome(address: string, r: ReportedRecipient): RecipientReport {
  const detail = [`a delivery status report said ${r.reportedAction}`, r.status && `Status ${r.status}`, r.diagnostic && `Diagnostic-Code: ${r.diagnostic}`].filter(Boolean).join("; ").slice(0, 1000);
  const outcome = r.action === "failed" ? "bounced" : r.action === "delayed" ? "delayed" : "delivered";
  return { address, outcome, ...(r.smtpCode ? { smtpCode: r.smtpCode } : {}), ...(r.status ? { enhancedCode: r.status } : {}), detail };
}

/** The same outcomes for the same recipients are the same report, whatever else differs in the mail. */
async function digestOf(kind: Report["kind"], outcomes: RecipientReport[]): Promise<string> {
  const canonical = JSON.stringify([kind, ...outcomes.map((o) => [o.address.toLowerCase(), o.outcome, o.enhancedCode ?? "", o.smtpCode ?? 0, o.detail]).sort()]);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonical)));
  return [...hash].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The stream's bytes, refusing more than `limit` (rawSize is what the sender declared; this is what came). */
async function readAtMost(stream: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new RangeError("the report is larger than it said");
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) all.set(chunk, (offset += chunk.byteLength) - chunk.byteLength);
  return all;
}
