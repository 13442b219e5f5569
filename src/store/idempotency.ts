// The idempotency_keys table: reserving a key for a request, marking it answered, giving it up, and
// forgetting keys older than their 24 hours. A reservation is one round trip: take the key (new, expired,
// or abandoned by a request that died before storing anything), and read whoever holds it.

export type Reservation =
  /** This request holds the key: accept the message under `messageId`. */
  | { kind: "reserved" }
  /** The key's first request created these messages (one, or a batch's); answer with them again. */
  | { kind: "replay"; messageIds: string[]; status: "queued" | "scheduled" }
  /** The first request is still being accepted. */
  | { kind: "in_flight" }
  /** The key was used with another request body. */
  | { kind: "mismatch" };

export interface KeyRequest {
  apiKeyName: string;
  key: string;
  fingerprint: string;
  /** The ids the request will create its messages under: one, or a batch's in order. */
  messageIds: string[];
  now: Date;
  ttlMs: number;
  /** A pending key older than this whose request stored no message was abandoned: it may be taken over. */
  abandonedAfterMs: number;
}

export async function reserveKey(db: D1Database, r: KeyRequest): Promise<Reservation> {
  const at = r.now.toISOString();
  const [taken, holder] = await db.batch([
    db
      .prepare(
        `INSERT INTO idempotency_keys (api_key_name, key, fingerprint, message_id, batch_ids_json, state, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?8, 'pending', ?5, ?6)
         ON CONFLICT (api_key_name, key) DO UPDATE SET
           fingerprint = excluded.fingerprint, message_id = excluded.message_id, batch_ids_json = excluded.batch_ids_json, state = 'pending',
           created_at = excluded.created_at, expires_at = excluded.expires_at
         WHERE idempotency_keys.expires_at <= ?5
            OR (idempotency_keys.state = 'pending' AND idempotency_keys.created_at <= ?7
                AND NOT EXISTS (SELECT 1 FROM messages WHERE id = idempotency_keys.message_id))
         RETURNING message_id`,
      )
      .bind(
        ...[r.apiKeyName, r.key, r.fingerprint, r.messageIds[0], at, new Date(r.now.getTime() + r.ttlMs).toISOString(), new Date(r.now.getTime() - r.abandonedAfterMs).toISOString()],
        r.messageIds.length > 1 ? JSON.stringify(r.messageIds) : null,
      ),
    db
      .prepare(
        `SELECT k.fingerprint, k.message_id, k.batch_ids_json, k.state, k.created_at, m.id IS NOT NULL AS stored, m.scheduled_at
         FROM idempotency_keys AS k LEFT JOIN messages AS m ON m.id = k.message_id
         WHERE k.api_key_name = ? AND k.key = ?`,
      )
      .bind(r.apiKeyName, r.key),
  ]);
  if ((taken?.results.length ?? 0) > 0) return { kind: "reserved" };
  const row = holder?.results[0] as
    | { fingerprint: string; message_id: string; batch_ids_json: string | null; state: "pending" | "done"; created_at: string; stored: number; scheduled_at: string | null }
    | undefined;
  if (!row) return { kind: "in_flight" }; // cannot happen within one transaction; "try again" is the safe answer
  if (row.fingerprint !== r.fingerprint) return { kind: "mismatch" };
  // A pending key whose message is stored belongs to a request that died after storing it: the message
  // goes out (the sweep sees to that), so it is answered like a finished one.
  const abandoned = Date.parse(row.created_at) <= r.now.getTime() - r.abandonedAfterMs;
  if (row.state === "done" || (abandoned && row.stored)) {
    return { kind: "replay", messageIds: row.batch_ids_json ? JSON.parse(row.batch_ids_json) : [row.message_id], status: row.scheduled_at ? "scheduled" : "queued" };
  }
  return { kind: "in_flight" };
}

export async function completeKey(db: D1Database, { apiKeyName, key, messageId }: { apiKeyName: string; key: string; messageId: string }): Promise<void> {
  await db.prepare("UPDATE idempotency_keys SET state = 'done' WHERE api_key_name = ? AND key = ? AND message_id = ?").bind(apiKeyName, key, messageId).run();
}

/** Gives the key up after its request failed, so the client's retry can use it. */
export async function releaseKey(db: D1Database, { apiKeyName, key, messageId }: { apiKeyName: string; key: string; messageId: string }): Promise<void> {
  await db.prepare("DELETE FROM idempotency_keys WHERE api_key_name = ? AND key = ? AND message_id = ?").bind(apiKeyName, key, messageId).run();
}

export async function purgeExpiredKeys(db: D1Database, now: Date): Promise<number> {
  const result = await db.prepare("DELETE FROM idempotency_keys WHERE expires_at <= ?").bind(now.toISOString()).run();
  return result.meta.changes ?? 0;
}
