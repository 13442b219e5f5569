// One log line per request (method, path, status, latency, and what it cost: D1 rows, queue operations,
// binding calls — its deferred work included) and a request-scoped logger in c.var.log. The bindings the
// handlers see are the metered ones.
import { createMiddleware } from "hono/factory";
import { createLogger } from "../../log";
import { createUsage, meterBindings, SOURCE_ENV, usageFields } from "../../usage";
import type { AppEnv } from "../context";
import { defer } from "../defer";

export const MAX_CLIENT_REQUEST_ID = 64;
/** Paths are logged up to this length: a URL may be kilobytes long, and no log line needs all of it. */
export const MAX_LOGGED_PATH = 256;
const loggedPath = (path: string) => (path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path);

export function requestLog({ now = () => Date.now() }: { now?: () => number } = {}) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const started = now();
    // A client's own X-Request-Id is kept beside Mailroom's (never instead of it), cut to 64 characters.
    const clientRequestId = c.req.header("X-Request-Id")?.slice(0, MAX_CLIENT_REQUEST_ID);
    const log = createLogger({ request_id: c.var.requestId, ...(clientRequestId ? { client_request_id: clientRequestId } : {}) });
    c.set("log", log);
    c.set("deferred", []);
    const usage = createUsage();
    if (c.env?.DB) {
      const source = c.env;
      c.env = { ...source, ...meterBindings(source, usage), [SOURCE_ENV]: source } as Env;
    }
    await next();
    c.header("X-Request-Id", c.var.requestId);
    const fields = { method: c.req.method, path: loggedPath(c.req.path), status: c.res.status, latency_ms: now() - started };
    const deferred = [...c.var.deferred];
    defer(c, async () => {
      await Promise.allSettled(deferred);
      log.info("request", { ...fields, ...usageFields(usage) });
    });
  });
}
