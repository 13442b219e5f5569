// Sends per API key, through the Workers Rate Limiting binding (SEND_RATE_LIMIT in wrangler.toml): over
// the limit a request gets 429 with Retry-After and changes nothing; other keys are counted apart. If the
// limiter itself fails, the request is served (and the failure logged): sending matters more than limiting.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";

/** The binding's window, as `simple.period` in wrangler.toml (10 or 60); a wait this long always clears it. */
export const SEND_RATE_LIMIT_PERIOD_SECONDS = 10;

export function sendRateLimit() {
  return createMiddleware<AppEnv>(async (c, next) => {
    let allowed = true;
    try {
      ({ success: allowed } = await c.env.SEND_RATE_LIMIT.limit({ key: c.var.apiKey.name }));
    } catch (error) {
      c.var.log.error("rate limiter unavailable; request served without it", { error });
    }
    if (!allowed) {
      throw new ApiError("rate_limited", `too many sends with this API key; retry in ${SEND_RATE_LIMIT_PERIOD_SECONDS} seconds`, undefined, {
        "Retry-After": String(SEND_RATE_LIMIT_PERIOD_SECONDS),
      });
    }
    await next();
  });
}
