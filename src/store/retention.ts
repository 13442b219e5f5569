// Retention's query: the bodies and attachments of settled messages accepted before a cutoff are
// cleared, a bounded number per call; status, events and recipients are left as they are.

/** Clears the bodies and attachments of up to `limit` settled messages created before `cutoff`; returns how many. */
export async function clearOldBodies(db: D1Database, { cutoff, limit }: { cutoff: string; limit: number }): Promise<number> {
  const result = await db
    .prepare(
      `UPDATE messages SET text_body = NULL, html_body = NULL, attachments_json = '[]'
       WHERE id IN (SELECT id FROM messages WHERE (text_body IS NOT NULL OR html_body IS NOT NULL) AND created_at < ?1
                      AND status IN ('sent', 'failed', 'canceled') LIMIT ?2)`,
    )
    .bind(cutoff, limit)
    .run();
  return result.meta.changes ?? 0;
}
