// Retention's queries: the settled messages accepted before a cutoff whose bodies are still stored, and
// clearing their bodies and attachments; status, events and recipients are left as they are.

export interface ExpiredMessage {
  id: string;
  /** Their attachments' R2 object, if they had one. */
  attachmentsKey: string | null;
}

/** Up to `limit` settled messages created before `cutoff` that still have their bodies. */
export async function findExpiredBodies(db: D1Database, { cutoff, limit }: { cutoff: string; limit: number }): Promise<ExpiredMessage[]> {
  const { results } = await db
    .prepare(
      `SELECT id, attachments_key FROM messages WHERE (text_body IS NOT NULL OR html_body IS NOT NULL) AND created_at < ?1
         AND status IN ('sent', 'failed', 'canceled') LIMIT ?2`,
    )
    .bind(cutoff, limit)
    .all<{ id: string; attachments_key: string | null }>();
  return results.map((r) => ({ id: r.id, attachmentsKey: r.attachments_key }));
}

/** Clears the bodies and attachments of these messages; returns how many rows changed. */
export async function clearBodies(db: D1Database, ids: string[]): Promise<number> {
  const result = await db
    .prepare("UPDATE messages SET text_body = NULL, html_body = NULL, attachments_json = '[]', attachments_key = NULL WHERE id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(ids))
    .run();
  return result.meta.changes ?? 0;
}
