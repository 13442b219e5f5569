// The sweeper's queries: pending messages whose next attempt (or whose claim's expiry) is overdue, and
// the mark that keeps one sweep after another from requeueing the same row every minute.
import { PENDING_SQL } from "./messages";

/** Pending rows due by `cutoff` and not swept since, oldest first. */
export async function findOverdue(db: D1Database, { cutoff, limit }: { cutoff: string; limit: number }): Promise<string[]> {
  const { results } = await db
    .prepare(
      `SELECT id FROM messages WHERE status IN ${PENDING_SQL} AND next_attempt_at <= ?1 AND (swept_at IS NULL OR swept_at < ?1)
       ORDER BY next_attempt_at LIMIT ?2`,
    )
    .bind(cutoff, limit)
    .all<{ id: string }>();
  return results.map((r) => r.id);
}

export async function markSwept(db: D1Database, ids: string[], at: string): Promise<void> {
  await db.prepare("UPDATE messages SET swept_at = ? WHERE id IN (SELECT value FROM json_each(?))").bind(at, JSON.stringify(ids)).run();
}
