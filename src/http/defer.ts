// Work that must not delay the response goes to ctx.waitUntil; the runtime keeps the isolate alive
// for it. Outside a Worker invocation (the app called directly) it simply runs unawaited. Each task is
// also listed on the request (c.var.deferred), so the request's log line can wait for what it cost.
import type { Context } from "hono";
import { createLogger } from "../log";

export function defer(c: Context, task: () => Promise<unknown>): void {
  const running = task().catch((error) => createLogger({ request_id: c.get("requestId") }).error("deferred task failed", { error }));
  c.get("deferred")?.push(running);
  try {
    c.executionCtx.waitUntil(running);
  } catch {
    // No execution context: nothing to extend.
  }
}
