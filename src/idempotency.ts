// Accepting under an Idempotency-Key: the key's first request creates the message; the same key and body
// again get the same answer (same id, no second mail), another body is refused, and a request arriving
// while the first is still being accepted is told so. Keys are per API key and kept 24 hours. A batch
// is one request: its key answers with all of its ids again.
import { AcceptOutcomeUnknown, type Accepted } from "./accept";
import type { Logger } from "./log";
import { completeKey, releaseKey, reserveKey } from "./store/idempotency";
import { KeyTakenOver, type KeyFence } from "./store/messages";

export const IDEMPOTENCY_KEY_TTL_MS = 24 * 3600_000;
/** A first request that stored nothing for this long has died; its key may be taken over. */
const ABANDONED_AFTER_MS = 60_000;

export type IdempotentAccept =
  | { kind: "accepted"; accepted: Accepted[] }
  | { kind: "replay"; ids: string[]; status: Accepted["status"] }
  | { kind: "in_flight" }
  | { kind: "mismatch" };

export async function acceptOnce(
  db: D1Database,
  { apiKeyName, key, fingerprint, count, log }: { apiKeyName: string; key: string; fingerprint: string; count: number; log: Logger },
  accept: (ids: string[], fence: KeyFence) => Promise<Accepted[]>,
): Promise<IdempotentAccept> {
  const messageIds = Array.from({ length: count }, () => crypto.randomUUID());
  const messageId = messageIds[0]!;
  const reservation = await reserveKey(db, { apiKeyName, key, fingerprint, messageIds, now: new Date(), ttlMs: IDEMPOTENCY_KEY_TTL_MS, abandonedAfterMs: ABANDONED_AFTER_MS });
  if (reservation.kind === "replay") return { kind: "replay", ids: reservation.messageIds, status: reservation.status };
  if (reservation.kind !== "reserved") return reservation;
  let accepted: Accepted[];
  try {
    accepted = await accept(messageIds, { apiKeyName, key, messageId });
  } catch (error) {
    // A retry took the key over while this request was still storing (it looked abandoned): this one stored
    // nothing, and the retry's answer stands. Its client is told to retry, which then replays that answer.
    if (error instanceof KeyTakenOver) return { kind: "in_flight" };
    // Else it is taken over once abandoned; when the messages may be stored, a retry must find them instead.
    if (!(error instanceof AcceptOutcomeUnknown)) await releaseKey(db, { apiKeyName, key, messageId }).catch(() => {});
    throw error;
  }
  // Not being able to mark the key done changes nothing for this request: a replay finds the stored message.
  await completeKey(db, { apiKeyName, key, messageId }).catch((error) => log.error("idempotency key not marked done", { error }));
  return { kind: "accepted", accepted };
}
