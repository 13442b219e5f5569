// Accepting a message: the D1 rows and the queue job must both exist before the API answers 202. If
// either write fails, the message is withdrawn and the client gets an error to retry on; only a message
// that a consumer has already claimed (the job did go out) is kept and answered 202 after all.
import type { Config } from "./config";
import { createMessageId, envelopeRecipients } from "./core/message";
import type { SendEmailRequest } from "./core/schema";
import { delayUntil, type OutboxJob } from "./delivery/outbox";
import { insertMessage, recordAccepted, withdrawMessage } from "./store/messages";

export interface Accepted {
  id: string;
  status: "queued" | "scheduled";
  /** Non-critical follow-up (the "accepted" history event) for ctx.waitUntil. */
  afterResponse: () => Promise<void>;
}

export async function acceptEmail(
  env: { DB: D1Database; OUTBOX: Queue },
  config: Config,
  request: Omit<SendEmailRequest, "scheduledAt"> & { scheduledAt: Date | null },
  { id = crypto.randomUUID(), apiKeyName, requestId }: { id?: string; apiKeyName: string; requestId: string },
): Promise<Accepted> {
  const createdAt = new Date().toISOString();
  const scheduledAt = request.scheduledAt?.toISOString();
  const from = request.from ?? config.mailFrom;
  const cc = request.cc ?? [];
  try {
    await insertMessage(env.DB, {
      id,
      apiKeyName,
      createdAt,
      messageId: createMessageId(id, from),
      from,
      to: request.to,
      cc,
      recipients: envelopeRecipients({ to: request.to, cc }),
      subject: request.subject,
      text: request.text,
      html: request.html,
      scheduledAt,
    });
    // A send more than 12 hours ahead is looked at again then, and put back until it is due.
    const delaySeconds = scheduledAt ? delayUntil(scheduledAt) : 0;
    await env.OUTBOX.send({ id, request_id: requestId } satisfies OutboxJob, { contentType: "json", delaySeconds });
  } catch (error) {
    // The insert may have committed before its answer was lost, and the job may have gone out before the
    // queue's error came back; a consumer may even have claimed it already. Take back what was not claimed.
    if (await withdrawMessage(env.DB, id).catch(() => true)) throw error;
  }
  return { id, status: scheduledAt ? "scheduled" : "queued", afterResponse: () => recordAccepted(env.DB, id, createdAt) };
}
