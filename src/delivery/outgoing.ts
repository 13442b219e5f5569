// A claimed message made ready to leave: its content built (with attachments from R2 when they are kept
// there), DKIM-signed when configured, and its envelope — the message's own return path and DSN request
// when a bounce address is set. What cannot be made ready is a failed transaction that says why.
import type { Config } from "../config";
import { signMessage } from "../core/dkim";
import { buildMime, type Envelope, type OutgoingMessage } from "../core/message";
import { envelopeIdFor, returnPathFor } from "../core/return-path";
import { getAttachments } from "../store/attachment-objects";
import { ended, type OutgoingMail, type SmtpTransaction } from "../transport/transport";
import { dkimSignerFor } from "./dkim-signer";

export interface ReadyOptions {
  config: Config;
  attachments: R2Bucket;
  /** The recipients this attempt sends to. */
  recipients: string[];
  /** When the attempt must be over. */
  deadline: number;
}

/** The mail for the transport, or the transaction that ends the attempt without it. */
export async function outgoingMail(message: OutgoingMessage & { id: string; attachmentsKey?: string | null }, options: ReadyOptions): Promise<OutgoingMail | SmtpTransaction> {
  const built = message.attachmentsKey ? await buildWithStoredAttachments(options.attachments, message) : buildContent(message);
  if (typeof built !== "string") return built;
  const signed = await signedContent(built, options.config);
  if (typeof signed !== "string") return signed;
  return { envelope: await envelopeFor(message, options), message: signed, fromAddress: message.from.address, deadline: options.deadline };
}

/** The message with its attachments read from R2, or why it cannot be sent: gone for good, or not readable now. */
async function buildWithStoredAttachments(bucket: R2Bucket, message: OutgoingMessage & { attachmentsKey?: string | null }): Promise<string | SmtpTransaction> {
  const stage = { stage: "message", command: "(reading the attachments)" } as const;
  try {
    const attachments = await getAttachments(bucket, message.attachmentsKey!);
    if (attachments) return buildContent({ ...message, attachments });
    return ended({ kind: "content", ...stage, message: "the message's attachments are no longer stored (the R2 object is gone)" });
  } catch (error) {
    return ended({ kind: "storage", ...stage, message: `the attachments could not be read from R2: ${String(error)}`.slice(0, 1000) });
  }
}

/** The message as it goes out, or the reason it cannot. */
function buildContent(message: OutgoingMessage): string | SmtpTransaction {
  try {
    return buildMime(message);
  } catch (error) {
    return ended({ kind: "content", stage: "message", command: "(building the message)", message: `the message could not be built: ${String(error)}`.slice(0, 1000) });
  }
}

/** The message with its DKIM signature when DKIM_* is set; a key WebCrypto refuses is a setting to fix, so the mail waits. */
async function signedContent(message: string, config: Config): Promise<string | SmtpTransaction> {
  const signer = dkimSignerFor(config);
  if (!signer) return message;
  try {
    return await signMessage(message, await signer);
  } catch (error) {
    return ended({ kind: "signing", stage: "message", command: "(signing the message)", message: `the message could not be DKIM-signed: ${String(error)}`.slice(0, 1000) });
  }
}

/**
 * With a bounce address, the envelope sender is the message's own return path and DSNs are asked for (a
 * relay that does not offer DSN gets no parameter); otherwise the From address.
 */
async function envelopeFor({ id, from }: { id: string; from: OutgoingMessage["from"] }, { config: { bounce }, recipients }: ReadyOptions): Promise<Envelope> {
  if (!bounce) return { from: from.address, recipients };
  return {
    from: await returnPathFor(id, { bounceAddress: bounce.address, secret: bounce.secret }),
    recipients,
    dsn: { envelopeId: await envelopeIdFor(id, bounce.secret), notify: bounce.notifySuccess ? ["SUCCESS", "FAILURE", "DELAY"] : ["FAILURE", "DELAY"] },
  };
}
