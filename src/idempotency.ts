// Accepting under an Idempotency-Key: the key's first request creates the message; the same key and body
// again get the same answer (same id, no second mail), another body is refused, and a request arriving
// while the first is still being accepted is told so. Keys are per API key and kept 24 hours.
import type { Accepted } from "./accept";
import type { Logger } from "./log";
import { completeKey, releaseKey, reserveKey } from "./store/idempotency";

export const IDEMPOTENCY_KEY_TTL_MS = 24 * 3600_000;
/** A first request that stored nothing for this long has died; its key may be taken over. */
const ABANDONED_AFTER_MS = 60_000;

export type IdempotentAccept =
  | { kind: "accepted"; accepted: Accepted }
  | { kind: "replay"; id: string; status: Accepted["status"] }
  | { kind: "in_flight" }
  | { kind: "mismatch" };

export async function acceptOnce(
  db: D1Database,
  { apiKeyName, key, fingerprint, log }: { apiKeyName: string; key: string; fingerprint: string; log: Logger },
  accept: (id: string) => Promise<Accepted>,
): Promise<IdempotentAccept> {
  const messageId = crypto.randomUUID();
  const reservation = await reserveKey(db, { apiKeyName, key, fingerprint, messageId, now: new Date(), ttlMs: IDEMPOTENCY_KEY_TTL_MS, abandonedAfterMs: ABANDONED_AFTER_MS });
  if (reservation.kind === "replay") return { kind: "replay", id: reservation.messageId, status: reservation.status };
  if (reservation.kind !== "reserved") return reservation;
  let accepted: Accepted;
  try {
    accepted = await accept(messageId);
  } catch (error) {
    await releaseKey(db, { apiKeyName, key, messageId }).catch(() => {}); // else it is taken over once abandoned
    throw error;
  }
  // Not being able to mark the key done changes nothing for this request: a replay finds the stored message.
  await completeKey(db, { apiKeyName, key, messageId }).catch((error) => log.error("idempotency key not marked done", { error }));
  return { kind: "accepted", accepted };
}
