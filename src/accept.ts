// Accepting a message: the D1 rows and the queue job must both exist before the API answers 202. If
// either write fails, the message is withdrawn and the client gets an error to retry on; only a message
// that a consumer has already claimed (the job did go out) is kept and answered 202 after all. Large
// attachments go to R2 first, and are deleted again with a withdrawn message.
import type { Config } from "./config";
import { decodedSize } from "./core/attachments";
import { createMessageId, envelopeRecipients } from "./core/message";
import type { ResolvedEmail } from "./core/template-request";
import type { Logger } from "./log";
import { delayUntil, type OutboxJob } from "./delivery/outbox";
import { deleteAttachments, INLINE_ATTACHMENT_BYTES, putAttachments } from "./store/attachment-objects";
import { insertMessage, withdrawMessage } from "./store/messages";

export interface Accepted {
  id: string;
  status: "queued" | "scheduled";
}

/**
 * Stores the message (its row, its recipients and its "accepted" event in one D1 batch) and queues its
 * job at the same time, not one after the other: a job that reaches a consumer before its row waits for
 * it (see the consumer), and the sweep covers one that gave up. Only when both writes succeed is it 202.
 */
export async function acceptEmail(
  env: { DB: D1Database; OUTBOX: Queue; ATTACHMENTS: R2Bucket },
  config: Config,
  request: Omit<ResolvedEmail, "scheduledAt"> & { scheduledAt: Date | null },
  { id = crypto.randomUUID(), apiKeyName, requestId, log }: { id?: string; apiKeyName: string; requestId: string; log: Logger },
): Promise<Accepted> {
  const createdAt = new Date().toISOString();
  const scheduledAt = request.scheduledAt?.toISOString();
  const from = request.from ?? config.mailFrom;
  const cc = request.cc ?? [];
  const bcc = request.bcc ?? [];
  const attachments = request.attachments ?? [];
  // Before the row and the job, so that no attempt can find the message without them.
  const large = attachments.reduce((sum, a) => sum + decodedSize(a.content), 0) > INLINE_ATTACHMENT_BYTES;
  const attachmentsKey = large ? await putAttachments(env.ATTACHMENTS, id, attachments) : undefined;
  const stored = insertMessage(env.DB, {
    id,
    apiKeyName,
    createdAt,
    messageId: createMessageId(id, from),
    from,
    to: request.to,
    cc,
    bcc,
    replyTo: request.replyTo ?? [],
    headers: request.headers ?? {},
    tags: request.tags ?? [],
    attachments: attachmentsKey ? [] : attachments,
    attachmentsKey,
    recipients: envelopeRecipients({ to: request.to, cc, bcc }),
    subject: request.subject,
    template: request.template,
    text: request.text,
    html: request.html,
    scheduledAt,
  });
  // A send more than 12 hours ahead is looked at again then, and put back until it is due.
  const delaySeconds = scheduledAt ? delayUntil(scheduledAt) : 0;
  const queued = env.OUTBOX.send({ id, request_id: requestId } satisfies OutboxJob, { contentType: "json", delaySeconds });
  const [insert, send] = await Promise.allSettled([stored, queued]);
  const failure = insert.status === "rejected" ? insert.reason : send.status === "rejected" ? send.reason : undefined;
  // The insert may have committed before its answer was lost, and the job may have gone out before the
  // queue's error came back; a consumer may even have claimed it already. Take back what was not claimed.
  if (failure !== undefined) {
    const withdrawn = await withdrawMessage(env.DB, id).catch(() => undefined);
    if (withdrawn === false) return { id, status: scheduledAt ? "scheduled" : "queued" }; // claimed: on its way
    // Withdrawn: its attachments go too. Not known (the withdraw failed): the row may still be there and need them.
    if (withdrawn && attachmentsKey) {
      await deleteAttachments(env.ATTACHMENTS, [attachmentsKey]).catch((error) =>
        log.error("the attachments of a withdrawn message could not be deleted from R2", { email_id: id, object_key: attachmentsKey, error }),
      );
    }
    throw failure;
  }
  return { id, status: scheduledAt ? "scheduled" : "queued" };
}
