// Accepting messages — one, or a batch all-or-nothing: the D1 rows and the queue jobs must all exist
// before the API answers 202. If a write fails, every message is withdrawn and the client gets an error to
// retry on; only when a consumer has already claimed one of them (the jobs did go out, the rows are in)
// are they kept and answered 202 after all. Large attachments go to R2 first, and are deleted again with
// withdrawn messages.
import type { Config } from "./config";
import { attachmentBytes } from "./core/attachments";
import { createMessageId, envelopeRecipients } from "./core/message";
import type { ResolvedEmail } from "./core/template-request";
import type { Logger } from "./log";
import { delayUntil, type OutboxJob } from "./delivery/outbox";
import { enqueueWebhookEvents, type WebhookJob } from "./delivery/webhooks";
import { attachmentsKeyOf, deleteAttachments, INLINE_ATTACHMENT_BYTES, putAttachments } from "./store/attachment-objects";
import { insertMessages, KeyTakenOver, MAX_ROW_BYTES, storedRowBytes, withdrawMessages, type KeyFence, type NewMessage } from "./store/messages";

export interface Accepted {
  id: string;
  status: "queued" | "scheduled";
}

export type AcceptRequest = Omit<ResolvedEmail, "scheduledAt"> & { scheduledAt: Date | null };

/**
 * A write failed and the withdraw could not tell whether the messages are still stored: they may be (the
 * sweep then sends them), so an Idempotency-Key must not be given up for a retry to send them again.
 */
export class AcceptOutcomeUnknown extends Error {
  constructor(cause: unknown) {
    super("the messages may or may not have been stored", { cause });
    this.name = "AcceptOutcomeUnknown";
  }
}

export interface AcceptEnv {
  DB: D1Database;
  OUTBOX: Queue;
  WEBHOOKS: Queue<WebhookJob>;
  ATTACHMENTS: R2Bucket;
}

/**
 * Stores the messages (rows, recipients and "accepted" events, all in one D1 batch) and queues their jobs
 * at the same time, not one after the other: a job that reaches a consumer before its row waits for it
 * (see the consumer), and the sweep covers one that gave up. Only when both writes succeed is it 202.
 * `ids` are the messages' ids, in the order of `requests`.
 */
export async function acceptEmails(
  env: AcceptEnv,
  config: Config,
  requests: AcceptRequest[],
  { ids, apiKeyName, requestId, log, fence }: { ids: string[]; apiKeyName: string; requestId: string; log: Logger; fence?: KeyFence },
): Promise<Accepted[]> {
  const createdAt = new Date().toISOString();
  const inline = requests.map((request, i): NewMessage => toNewMessage(request, { id: ids[i]!, apiKeyName, createdAt, config }));
  // Attachments go to R2 when they are large, or when the row would not fit D1 with them (then it does:
  // the other fields' limits keep it under 1.9 MB). Before the rows and the jobs, so that no attempt can
  // find a message without its attachments.
  const toR2 = inline.map((m) => m.attachments.length > 0 && (attachmentBytes(m.attachments) > INLINE_ATTACHMENT_BYTES || storedRowBytes(m) > MAX_ROW_BYTES));
  const attachmentKeys = await storeLargeAttachments(env.ATTACHMENTS, requests, ids, toR2, log);
  const messages = inline.map((m, i): NewMessage => (attachmentKeys[i] ? { ...m, attachments: [], attachmentsKey: attachmentKeys[i] } : m));
  const stored = insertMessages(env.DB, messages, fence);
  // A send more than 12 hours ahead is looked at again then, and put back until it is due.
  const jobs = messages.map((m) => ({ body: { id: m.id, request_id: requestId } satisfies OutboxJob, contentType: "json" as const, delaySeconds: m.scheduledAt ? delayUntil(m.scheduledAt) : 0 }));
  const [only] = jobs;
  const queued = jobs.length === 1 ? env.OUTBOX.send(only!.body, { contentType: only!.contentType, delaySeconds: only!.delaySeconds }) : env.OUTBOX.sendBatch(jobs);
  const [insert, send] = await Promise.allSettled([stored, queued]);
  const failure = insert.status === "rejected" ? insert.reason : send.status === "rejected" ? send.reason : undefined;
  if (failure instanceof KeyTakenOver) {
    // The fence wrote nothing in that transaction: nothing to withdraw, only the attachments to delete.
    await deleteStored(env.ATTACHMENTS, attachmentKeys, log);
    throw failure;
  }
  if (failure !== undefined) {
    // The insert may have committed before its answer was lost, and the jobs may have gone out before the
    // queue's error came back; a consumer may even have claimed one already: then all of them are in place.
    const withdrawn = await withdrawMessages(env.DB, ids).catch(() => undefined);
    // Withdrawn: their attachments go too. Not known (the withdraw failed): the rows may still be there and need them.
    if (withdrawn === undefined) throw new AcceptOutcomeUnknown(failure);
    if (withdrawn) {
      await deleteStored(env.ATTACHMENTS, attachmentKeys, log);
      throw failure;
    }
  }
  if (insert.status === "fulfilled") await enqueueWebhookEvents(env.WEBHOOKS, insert.value, log);
  return messages.map((m) => ({ id: m.id, status: m.scheduledAt ? "scheduled" : "queued" }));
}

function toNewMessage(
  request: AcceptRequest,
  { id, apiKeyName, createdAt, config }: { id: string; apiKeyName: string; createdAt: string; config: Config },
): NewMessage {
  const from = request.from ?? config.mailFrom;
  const cc = request.cc ?? [];
  const bcc = request.bcc ?? [];
  return {
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
    attachments: request.attachments ?? [],
    recipients: envelopeRecipients({ to: request.to, cc, bcc }),
    subject: request.subject,
    template: request.template,
    text: request.text,
    html: request.html,
    scheduledAt: request.scheduledAt?.toISOString(),
  };
}

/** The R2 key of each request's attachments where they do not go in its row (`large`); all or none are stored. */
async function storeLargeAttachments(bucket: R2Bucket, requests: AcceptRequest[], ids: string[], large: boolean[], log: Logger): Promise<(string | undefined)[]> {
  const puts = await Promise.allSettled(requests.map((request, i) => (large[i] ? putAttachments(bucket, ids[i]!, request.attachments!) : undefined)));
  const refused = puts.find((p) => p.status === "rejected");
  if (refused) {
    // A refused put may have written its object all the same (its answer lost): every one goes.
    await deleteStored(bucket, ids.map((id, i) => (large[i] ? attachmentsKeyOf(id) : undefined)), log);
    throw refused.reason;
  }
  return puts.map((p) => (p.status === "fulfilled" ? p.value : undefined));
}

async function deleteStored(bucket: R2Bucket, keys: (string | undefined)[], log: Logger): Promise<void> {
  const stored = keys.filter((key): key is string => key !== undefined);
  await deleteAttachments(bucket, stored).catch((error) =>
    log.error("the attachments of a withdrawn message could not be deleted from R2", { object_keys: stored, error }),
  );
}
