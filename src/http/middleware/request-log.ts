// One log line per request (method, path, status, latency) and a request-scoped logger in c.var.log.
import { createMiddleware } from "hono/factory";
import { createLogger } from "../../log";
import type { AppEnv } from "../context";
import { defer } from "../defer";

export function requestLog({ now = () => Date.now() }: { now?: () => number } = {}) {
  return createMiddleware<AppEnv>(async (c, next) => {
    const started = now();
    const log = createLogger({ request_id: c.var.requestId });
    c.set("log", log);
    await next();
    const fields = { method: c.req.method, path: c.req.path, status: c.res.status, latency_ms: now() - started };
    defer(c, async () => log.info("request", fields));
  });
}
