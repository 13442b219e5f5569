// The webhooks table: a key's endpoints, their subscriptions and signing secrets. Every read and change is
// scoped to the API key that made the webhook: another key's webhook is, to this one, no webhook at all.
import type { PageRequest } from "../core/pagination";
import type { WebhookEventType } from "../core/webhook-events";
import { readPage } from "./pages";

export type WebhookStatus = "enabled" | "disabled";

export interface WebhookRecord {
  id: string;
  apiKeyName: string;
  endpoint: string;
  events: WebhookEventType[];
  status: WebhookStatus;
  signingSecret: string;
  /** After a rotation, the secret deliveries are also signed with until `previousSecretUntil`. */
  previousSecret: string | null;
  previousSecretUntil: string | null;
  /** When its deliveries began failing (none has succeeded since); null while they succeed. */
  failingSince: string | null;
  createdAt: string;
}

export interface WebhookRow {
  id: string;
  api_key_name: string;
  endpoint: string;
  events_json: string;
  status: WebhookStatus;
  signing_secret: string;
  previous_secret: string | null;
  previous_secret_until: string | null;
  failing_since: string | null;
  created_at: string;
}

export function toWebhook(row: WebhookRow): WebhookRecord {
  return {
    id: row.id,
    apiKeyName: row.api_key_name,
    endpoint: row.endpoint,
    events: JSON.parse(row.events_json),
    status: row.status,
    signingSecret: row.signing_secret,
    previousSecret: row.previous_secret,
    previousSecretUntil: row.previous_secret_until,
    failingSince: row.failing_since,
    createdAt: row.created_at,
  };
}

/** Each webhook makes a row per event in the delivery's own transaction: a key has a bounded number of them. */
export const MAX_WEBHOOKS_PER_KEY = 20;

export async function countWebhooks(db: D1Database, apiKeyName: string): Promise<number> {
  return (await db.prepare("SELECT COUNT(*) AS n FROM webhooks WHERE api_key_name = ?").bind(apiKeyName).first<number>("n")) ?? 0;
}

/** How long a rotated-out secret still signs deliveries, so receivers can switch without a gap. */
export const PREVIOUS_SECRET_HOURS = 24;

export async function createWebhook(
  db: D1Database,
  w: Pick<WebhookRecord, "id" | "apiKeyName" | "endpoint" | "events" | "signingSecret" | "createdAt">,
): Promise<void> {
  await db
    .prepare("INSERT INTO webhooks (id, api_key_name, endpoint, events_json, status, signing_secret, created_at) VALUES (?, ?, ?, ?, 'enabled', ?, ?)")
    .bind(w.id, w.apiKeyName, w.endpoint, JSON.stringify(w.events), w.signingSecret, w.createdAt)
    .run();
}

export async function getWebhook(db: D1Database, apiKeyName: string, id: string): Promise<WebhookRecord | null> {
  const row = await db.prepare("SELECT * FROM webhooks WHERE id = ? AND api_key_name = ?").bind(id, apiKeyName).first<WebhookRow>();
  return row ? toWebhook(row) : null;
}

export async function listWebhooks(db: D1Database, apiKeyName: string, page: PageRequest) {
  const found = await readPage<WebhookRow>(db, { from: "webhooks", scope: "api_key_name = ?", scopeValues: [apiKeyName], columns: "*" }, page);
  return found && { webhooks: found.rows.map(toWebhook), hasMore: found.hasMore };
}

/** Changes what is given; enabling a webhook starts its failure count afresh. False: no such webhook for this key. */
export async function updateWebhook(
  db: D1Database,
  apiKeyName: string,
  id: string,
  change: { endpoint?: string; events?: WebhookEventType[]; status?: WebhookStatus },
): Promise<boolean> {
  const { meta } = await db
    .prepare(
      `UPDATE webhooks SET endpoint = COALESCE(?1, endpoint), events_json = COALESCE(?2, events_json), status = COALESCE(?3, status),
         failing_since = CASE WHEN ?3 = 'enabled' THEN NULL ELSE failing_since END
       WHERE id = ?4 AND api_key_name = ?5`,
    )
    .bind(change.endpoint ?? null, change.events ? JSON.stringify(change.events) : null, change.status ?? null, id, apiKeyName)
    .run();
  return meta.changes > 0;
}

/** Deletes the webhook with its events and their attempts. False: no such webhook for this key. */
export async function deleteWebhook(db: D1Database, apiKeyName: string, id: string): Promise<boolean> {
  const { meta } = await db.prepare("DELETE FROM webhooks WHERE id = ? AND api_key_name = ?").bind(id, apiKeyName).run();
  return meta.changes > 0;
}

/** A new signing secret; the one it replaces still signs deliveries for PREVIOUS_SECRET_HOURS. */
export async function rotateSigningSecret(db: D1Database, apiKeyName: string, id: string, { secret, now }: { secret: string; now: Date }): Promise<boolean> {
  const until = new Date(now.getTime() + PREVIOUS_SECRET_HOURS * 3600_000).toISOString();
  const { meta } = await db
    .prepare("UPDATE webhooks SET previous_secret = signing_secret, previous_secret_until = ?, signing_secret = ? WHERE id = ? AND api_key_name = ?")
    .bind(until, secret, id, apiKeyName)
    .run();
  return meta.changes > 0;
}

/** The secrets a delivery is signed with at `now`: the current one, and the previous one while it is honoured. */
export function signingSecrets(w: WebhookRecord, now: Date): string[] {
  const previous = w.previousSecret && w.previousSecretUntil && Date.parse(w.previousSecretUntil) > now.getTime() ? [w.previousSecret] : [];
  return [w.signingSecret, ...previous];
}
