// One page of a list, newest first, by keyset over (created_at, id) within a scope (one API key's emails,
// one webhook's events…), served by an index that starts with the scope's columns and ends (created_at, id):
// a page reads its rows and one more, never the rows before it or another scope's.
import type { PageRequest } from "../core/pagination";

export interface PageQuery {
  /** A table, or a table with an alias (its created_at and id are the keyset). */
  from: string;
  /** The scope, e.g. "api_key_name = ?" with `scopeValues`. */
  scope: string;
  scopeValues: unknown[];
  columns: string;
}

/** The rows of the page and whether more follow (after it, or before it when paging back); null: the cursor is not in the list. */
export async function readPage<Row>(db: D1Database, query: PageQuery, page: PageRequest): Promise<{ rows: Row[]; hasMore: boolean } | null> {
  const { from, scope, scopeValues, columns } = query;
  const cursor = page.after ?? page.before;
  const newerFirst = page.before === undefined;
  const keyset = cursor === undefined ? "" : ` AND (created_at, id) ${newerFirst ? "<" : ">"} (SELECT created_at, id FROM ${from} WHERE ${scope} AND id = ?)`;
  const select = db
    .prepare(`SELECT ${columns} FROM ${from} WHERE ${scope}${keyset} ORDER BY created_at ${newerFirst ? "DESC" : "ASC"}, id ${newerFirst ? "DESC" : "ASC"} LIMIT ?`)
    .bind(...scopeValues, ...(cursor === undefined ? [] : [...scopeValues, cursor]), page.limit + 1);
  if (cursor === undefined) {
    const { results } = await select.all<Row>();
    return { rows: results.slice(0, page.limit), hasMore: results.length > page.limit };
  }
  const [found, rows] = await db.batch([db.prepare(`SELECT 1 AS yes FROM ${from} WHERE ${scope} AND id = ?`).bind(...scopeValues, cursor), select]);
  if ((found?.results.length ?? 0) === 0) return null;
  const results = rows!.results as Row[];
  const pageRows = results.slice(0, page.limit);
  return { rows: newerFirst ? pageRows : pageRows.reverse(), hasMore: results.length > page.limit };
}
