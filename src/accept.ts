// Accepting a message: the D1 rows and the queue job must both exist before the API answers 202. If
// either write fails, the message is withdrawn and the client gets an error to retry on; only a message
// that a consumer has already claimed (the job did go out) is kept and answered 202 after all.
import type { Config } from "./config";
import { createMessageId, envelopeRecipients } from "./core/message";
import type { SendEmailRequest } from "./core/schema";
import type { OutboxJob } from "./delivery/outbox";
import { insertMessage, recordAccepted, withdrawMessage } from "./store/messages";

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
  const cc = request.cc ?? [];
  try {
    await insertMessage(env.DB, {
      id,
      apiKeyName: origin.apiKeyName,
      createdAt,
      messageId: createMessageId(id, from),
      from,
      to: request.to,
      cc,
      recipients: envelopeRecipients({ to: request.to, cc }),
      subject: request.subject,
      text: request.text,
      html: request.html,
    });
    await env.OUTBOX.send({ id, request_id: origin.requestId } satisfies OutboxJob, { contentType: "json" });
  } catch (error) {
    // The insert may have committed before its answer was lost, and the job may have gone out before the
    // queue's error came back; a consumer may even have claimed it already. Take back what was not claimed.
    if (await withdrawMessage(env.DB, id).catch(() => true)) throw error;
  }
  return { id, afterResponse: () => recordAccepted(env.DB, id, createdAt) };
}
