// What a request or a queue batch costs, counted as Cloudflare bills it: D1 rows read and written (index
// entries count as rows written; D1's own meta says so per statement), Queues operations (each message
// written, read and deleted is one), and calls that leave the isolate. The bindings are wrapped once per
// invocation, so no query can go uncounted; the totals go into that invocation's log line.

/** On an env whose bindings were swapped for metered ones: the env the runtime gave (what config is cached by). */
export const SOURCE_ENV = Symbol("the runtime's env");

export interface Usage {
  d1RowsRead: number;
  d1RowsWritten: number;
  queueOps: number;
  /** D1 statements or batches, Queue sends, R2 calls: the binding calls of this invocation. */
  bindingCalls: number;
}

export const createUsage = (): Usage => ({ d1RowsRead: 0, d1RowsWritten: 0, queueOps: 0, bindingCalls: 0 });

/** The log fields, snake_case as every log field. */
export function usageFields(usage: Usage) {
  return { d1_rows_read: usage.d1RowsRead, d1_rows_written: usage.d1RowsWritten, queue_ops: usage.queueOps, binding_calls: usage.bindingCalls };
}

function addMeta(usage: Usage, result: D1Result | D1Result[]): void {
  for (const { meta } of Array.isArray(result) ? result : [result]) {
    usage.d1RowsRead += meta?.rows_read ?? 0;
    usage.d1RowsWritten += meta?.rows_written ?? 0;
  }
}

/** The statement a metered one stands for: D1's batch() takes only its own. */
const unmetered = new WeakMap<D1PreparedStatement, D1PreparedStatement>();

function meterStatement(statement: D1PreparedStatement, usage: Usage): D1PreparedStatement {
  const run = async <T>(method: "all" | "run"): Promise<D1Result<T>> => {
    usage.bindingCalls++;
    const result = await (method === "all" ? statement.all<T>() : (statement.run<T>() as Promise<D1Result<T>>));
    addMeta(usage, result);
    return result;
  };
  const metered = {
    bind: (...values: unknown[]) => meterStatement(statement.bind(...values), usage),
    all: <T>() => run<T>("all"),
    run: <T>() => run<T>("run"),
    // first() gives no meta: read through all(), which does, with the same answers.
    first: async <T>(column?: string) => {
      const row = (await run<Record<string, unknown>>("all")).results[0];
      if (row === undefined) return null;
      if (column !== undefined && !Object.hasOwn(row, column)) throw new Error(`D1_ERROR: no such column: ${column}`);
      return (column === undefined ? row : row[column]) as T;
    },
    // raw() gives no meta either, and its arrays keep what row objects cannot (two columns of one name):
    // Mailroom never calls it, so it is counted as a call, its rows not.
    raw: (options?: { columnNames?: boolean }) => (usage.bindingCalls++, statement.raw(options as { columnNames: true })),
  } as unknown as D1PreparedStatement;
  unmetered.set(metered, statement);
  return metered;
}

/** A D1 database whose every statement adds its rows to `usage`. */
export function meterD1(db: D1Database, usage: Usage): D1Database {
  return {
    prepare: (query: string) => meterStatement(db.prepare(query), usage),
    batch: async <T>(statements: D1PreparedStatement[]) => {
      usage.bindingCalls++;
      const results = await db.batch<T>(statements.map((s) => unmetered.get(s) ?? s));
      addMeta(usage, results);
      return results;
    },
    exec: (query: string) => (usage.bindingCalls++, db.exec(query)),
    withSession: () => {
      throw new Error("meterD1: sessions are not used by Mailroom");
    },
    dump: () => db.dump(),
  } as D1Database;
}

/** A queue whose sends count one operation per message written. */
export function meterQueue<Body>(queue: Queue<Body>, usage: Usage): Queue<Body> {
  return {
    send: (body: Body, options?: QueueSendOptions) => (usage.bindingCalls++, (usage.queueOps += 1), queue.send(body, options)),
    sendBatch: (messages: Iterable<MessageSendRequest<Body>>, options?: QueueSendBatchOptions) => {
      const list = [...messages];
      usage.bindingCalls++;
      usage.queueOps += list.length;
      return queue.sendBatch(list, options);
    },
  } as Queue<Body>;
}

/** The env's bindings that cost per use (D1, the outbox queue, the R2 bucket), counted into `usage`. */
export function meterBindings(env: Env, usage: Usage): Pick<Env, "DB" | "OUTBOX" | "WEBHOOKS" | "ATTACHMENTS"> {
  return { DB: meterD1(env.DB, usage), OUTBOX: meterQueue(env.OUTBOX, usage), WEBHOOKS: meterQueue(env.WEBHOOKS, usage), ATTACHMENTS: meterR2(env.ATTACHMENTS, usage) };
}

/** R2 calls are subrequests too (no rows, no queue operations). */
export function meterR2(bucket: R2Bucket, usage: Usage): R2Bucket {
  return new Proxy(bucket, {
    get(target, property) {
      const value = Reflect.get(target, property);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => (usage.bindingCalls++, value.apply(target, args));
    },
  });
}

/** `target` with some members replaced; every other one as it is (methods bound to the target). */
function passThrough<T extends object>(target: T, replaced: Partial<T>): T {
  return new Proxy(target, {
    get(object, property) {
      if (Object.hasOwn(replaced, property)) return replaced[property as keyof T];
      const value = Reflect.get(object, property);
      return typeof value === "function" ? value.bind(object) : value;
    },
  });
}

/**
 * A delivered batch's queue operations: each message was read once, and each not retried is deleted (acked,
 * explicitly or by returning). Wraps the messages' retry() so the count is the one the consumer made.
 */
export function meterBatch<Body>(batch: MessageBatch<Body>, usage: Usage): { batch: MessageBatch<Body>; settle(options?: { failed?: boolean }): void } {
  let retried = 0;
  const counted = new WeakSet<Message<Body>>();
  const retry = (message: Message<Body>) => {
    if (!counted.has(message)) (counted.add(message), retried++);
  };
  const messages = batch.messages.map((message) => passThrough(message, { retry: (options?: QueueRetryOptions) => (retry(message), message.retry(options)) }));
  const retryAll = (options?: QueueRetryOptions) => {
    for (const message of batch.messages) retry(message);
    batch.retryAll(options);
  };
  const metered = passThrough(batch, { messages, retryAll });
  const settle = ({ failed = false }: { failed?: boolean } = {}) => {
    // A consumer that threw has every message retried: read, not deleted.
    usage.queueOps += batch.messages.length + (failed ? 0 : batch.messages.length - retried);
  };
  return { batch: metered, settle };
}
