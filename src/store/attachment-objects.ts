// Attachments too large for a D1 row live in R2: one object per message holding the same JSON the row
// would, written before the row and the job exist (a consumer never finds a row without its attachments),
// read when the message is built, deleted by retention or when an accept is withdrawn.
import type { Attachment } from "../core/attachments";

/** A message's attachments stay in its D1 row up to this many bytes in all (decoded); above, they go to R2. */
export const INLINE_ATTACHMENT_BYTES = 256 * 1024;

/** Where a message's attachments are kept. */
export const attachmentsKeyOf = (messageId: string) => `attachments/${messageId}`;

/** Stores a message's attachments; returns the object's key. */
export async function putAttachments(bucket: R2Bucket, messageId: string, attachments: Attachment[]): Promise<string> {
  const key = attachmentsKeyOf(messageId);
  await bucket.put(key, JSON.stringify(attachments), { httpMetadata: { contentType: "application/json" } });
  return key;
}

/** The attachments stored under `key`, or null when there is no such object (it was deleted). */
export async function getAttachments(bucket: R2Bucket, key: string): Promise<Attachment[] | null> {
  const object = await bucket.get(key);
  return object ? object.json<Attachment[]>() : null;
}

/** Deletes the objects (at most 1000 keys, R2's limit per call). */
export async function deleteAttachments(bucket: R2Bucket, keys: string[]): Promise<void> {
  if (keys.length > 0) await bucket.delete(keys);
}
