// Builds test data straight in D1 and drives the queue consumer directly, for delivery tests that
// need a relay other than the default one (each SMTP server of the global setup is its own env).
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import mailroom from "../../src/index";
import { createMessageId } from "../../src/core/message";
import type { OutboxJob } from "../../src/delivery/outbox";
import { claimMessages, recordAttempts, type AttemptRecord, type Claim } from "../../src/store/attempts";
import { getMessageWithHistory, insertMessages } from "../../src/store/messages";
import { uniqueRecipient } from "./api";

/** A queued message as the accept path would have stored it (without enqueueing it). */
export async function insertQueuedMessage(fields: { to?: string | string[]; subject?: string; text?: string; createdAt?: string; apiKeyName?: string } = {}) {
  const id = crypto.randomUUID();
  const from = { name: "Mailroom Tests", address: "noreply@mailroom.test" };
  const recipients = [fields.to ?? uniqueRecipient()].flat();
  await insertMessages(env.DB, [{
    id,
    apiKeyName: fields.apiKeyName ?? "tests", // the key test/helpers/api.ts sends
    createdAt: fields.createdAt ?? new Date().toISOString(),
    messageId: createMessageId(id, from),
    from,
    to: recipients.map((address) => ({ address })),
    cc: [],
    bcc: [],
    replyTo: [],
    headers: {},
    attachments: [],
    tags: [],
    recipients,
    subject: fields.subject ?? "Test message",
    text: fields.text ?? "Hello from the tests",
  }]);
  return { id, to: recipients[0]! };
}

/**
 * Runs a queue consumer on one batch of jobs for `ids` (job ids are `job-<id>`), with env overrides
 * (another SMTP server, a broken binding); `onBatch` sees the batch first, e.g. to spy on a message.
 */
export async function runQueue(
  queue: "mailroom-outbox" | "mailroom-dead-letter",
  ids: string[],
  overrides: Partial<Record<keyof Env, unknown>> = {},
  onBatch?: (batch: MessageBatch<OutboxJob>) => void,
) {
  const batch = createMessageBatch<OutboxJob>(
    queue,
    ids.map((id) => ({ id: `job-${id}`, timestamp: new Date(), attempts: 1, body: { id } })),
  );
  onBatch?.(batch);
  const ctx = createExecutionContext();
  const started = Date.now();
  const worker: ExportedHandler<Env, OutboxJob> = mailroom;
  await worker.queue!(batch, { ...env, ...overrides } as Env, ctx);
  const result = await getQueueResult(batch, ctx);
  return { result, elapsedMs: Date.now() - started };
}

/** Runs the outbox consumer on one batch with env overrides (e.g. another SMTP server). */
export function deliver(ids: string[], overrides: Partial<Record<keyof Env, unknown>> = {}) {
  return runQueue("mailroom-outbox", ids, overrides);
}

export async function loadMessage(id: string) {
  const history = await getMessageWithHistory(env.DB, id);
  if (!history) throw new Error(`no message ${id}`);
  return history;
}

/** One message's claim, as the consumer takes it for a whole chunk (claimMessages). */
export async function claimMessage(db: D1Database, id: string, options: { now: Date; leaseMs: number }): Promise<Claim> {
  return (await claimMessages(db, [id], options)).get(id)!;
}

type Fields<K extends AttemptRecord["kind"]> = Omit<Extract<AttemptRecord, { kind: K }>, "kind">;
const recordOne = async (db: D1Database, record: AttemptRecord) => (await recordAttempts(db, [record])).applied[0]!;
export const recordSent = (db: D1Database, fields: Fields<"sent">) => recordOne(db, { kind: "sent", ...fields });
export const recordRetry = (db: D1Database, fields: Fields<"retry">) => recordOne(db, { kind: "retry", ...fields });
export const recordFailure = (db: D1Database, fields: Fields<"failed">) => recordOne(db, { kind: "failed", ...fields });

/** The test database, except that its first batch (a claim, as a rule) takes `delayMs` longer. */
export function dbWithSlowFirstBatch(delayMs: number): D1Database {
  let calls = 0;
  return {
    prepare: (sql: string) => env.DB.prepare(sql),
    batch: async (statements: D1PreparedStatement[]) => {
      if ((calls += 1) === 1) await new Promise((resolve) => setTimeout(resolve, delayMs));
      return env.DB.batch(statements);
    },
  } as unknown as D1Database;
}

/** The test database, its batches run by `batch`, which can tell each statement's SQL. */
export function dbWithBatch(batch: (statements: D1PreparedStatement[], sqlOf: (s: D1PreparedStatement) => string | undefined) => Promise<D1Result[]>): D1Database {
  const sqlOf = new WeakMap<object, string>();
  return {
    prepare: (sql: string) =>
      new Proxy(env.DB.prepare(sql), {
        get: (target, property) =>
          property === "bind"
            ? (...values: unknown[]) => {
                const bound = target.bind(...values);
                sqlOf.set(bound, sql);
                return bound;
              }
            : Reflect.get(target, property).bind(target),
      }),
    batch: (statements: D1PreparedStatement[]) => batch(statements, (s) => sqlOf.get(s)),
  } as unknown as D1Database;
}

/** The test database, with a look at each batch it ran: its statements (by their SQL) and their results. */
export function dbWithSqlOf(onBatch: (statements: D1PreparedStatement[], results: D1Result[], sqlOf: (s: D1PreparedStatement) => string | undefined) => void) {
  return {
    db: dbWithBatch(async (statements, sqlOf) => {
      const results = await env.DB.batch(statements);
      onBatch(statements, results, sqlOf);
      return results;
    }),
  };
}
