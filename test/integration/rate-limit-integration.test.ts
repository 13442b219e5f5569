// Sends per API key through the real Rate Limiting binding (SEND_RATE_LIMIT, with the tests' limit in its
// 10-second window): the one past the limit gets 429 with Retry-After and changes nothing; another key is
// still served.
import { env } from "cloudflare:workers";
import { setTimeout as delay } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { SEND_RATE_LIMIT_PERIOD_SECONDS } from "../../src/http/middleware/send-rate-limit";
import { LIMITED_KEY, OTHER_KEY, api, captureLogs, messageRowsFor, uniqueRecipient } from "../helpers/api";

/** The limit the tests run with (vitest.config.ts). */
const LIMIT = (env as unknown as { TEST_SEND_RATE_LIMIT: number }).TEST_SEND_RATE_LIMIT;
const WINDOW_MS = SEND_RATE_LIMIT_PERIOD_SECONDS * 1000;

describe("rate limits", () => {
  it("answers 429 with Retry-After once a key has used its sends, and serves other keys", { timeout: 30_000 }, async () => {
    // The local limiter counts in windows aligned to the clock: start early in one, so the whole run fits.
    const into = Date.now() % WINDOW_MS;
    if (into > WINDOW_MS / 2) await delay(WINDOW_MS - into + 20);
    // Requests that fail validation count too (and store nothing): they use up the key's allowance.
    const logs = captureLogs(); // a log line per request, kept here rather than shipped to the test runner
    const invalidSend = () => api("/v1/emails", { method: "POST", key: LIMITED_KEY, json: { to: "not an address" } });
    const spent = await Promise.all(Array.from({ length: LIMIT }, invalidSend)).finally(logs.restore);
    expect(spent.map((res) => res.status)).toEqual(Array(LIMIT).fill(422));

    const to = uniqueRecipient("limited");
    const refused = await api("/v1/emails", { method: "POST", key: LIMITED_KEY, json: { to, subject: "One too many", text: "x" } });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("Retry-After")).toBe(String(SEND_RATE_LIMIT_PERIOD_SECONDS));
    expect(await refused.json()).toEqual({
      statusCode: 429,
      name: "rate_limited",
      message: `too many sends with this API key; retry in ${SEND_RATE_LIMIT_PERIOD_SECONDS} seconds`,
      error: { code: "rate_limited", message: `too many sends with this API key; retry in ${SEND_RATE_LIMIT_PERIOD_SECONDS} seconds` },
    });
    expect(await messageRowsFor(to)).toBe(0);
    // Rendering a template is counted by the same limit: it costs what a templated send costs.
    const render = await api("/v1/templates/welcome/render", { method: "POST", key: LIMITED_KEY, json: { variables: {} } });
    expect(render.status).toBe(429);
    expect(render.headers.get("Retry-After")).toBe(String(SEND_RATE_LIMIT_PERIOD_SECONDS));

    const other = await api("/v1/emails", { method: "POST", key: OTHER_KEY, json: { to: uniqueRecipient("unlimited"), subject: "Still served", text: "x" } });
    expect(other.status).toBe(202);
    // Reading is not limited.
    expect((await api(`/v1/emails/${crypto.randomUUID()}`, { key: LIMITED_KEY })).status).toBe(404);
  });
});
