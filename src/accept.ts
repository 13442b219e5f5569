// Accepting a message: the D1 row and the queue job must both exist before the API answers 202.
// If the queue refuses the job, the row is removed again and the client gets an error to retry on,
// so no row ever claims a mail that nothing will deliver.
import type { Config } from "./config";
import { createMessageId, envelopeRecipients } from "./core/message";
import type { SendEmailRequest } from "./core/schema";
import type { OutboxJob } from "./delivery/outbox";
import { deleteMessage, insertMessage, recordAccepted } from "./store/messages";

export interface Accepted {
  id: string;
  /** Non-critical follow-up (the "accepted" history event) for ctx.waitUntil. */
  afterResponse: () => Promise<void>;
}

export async function acceptEmail(
  env: { DB: D1Database; OUTBOX: Queue },
  config: Config,
  request: SendEmailRequest,
  origin: { apiKeyName: string; requestId: string },
): Promise<Accepted> {
  const id = crypto.randomUUID();
  const createdAt = new Date().toISOString();
  const from = request.from ?? config.mailFrom;
  await insertMessage(env.DB, {
    id,
    apiKeyName: origin.apiKeyName,
    createdAt,
    messageId: createMessageId(id, from),
    from,
    to: request.to,
    cc: request.cc ?? [],
    recipients: envelopeRecipients({ to: request.to, cc: request.cc ?? [] }),
    subject: request.subject,
    text: request.text,
    html: request.html,
  });
  try {
    await env.OUTBOX.send({ id, request_id: origin.requestId } satisfies OutboxJob, { contentType: "json" });
  } catch (error) {
    await deleteMessage(env.DB, id);
    throw error;
  }
  return { id, afterResponse: () => recordAccepted(env.DB, id, createdAt) };
}
