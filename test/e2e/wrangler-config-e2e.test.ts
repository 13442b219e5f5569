// What the code assumes about wrangler.toml, checked against the file itself.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { SEND_RATE_LIMIT_PERIOD_SECONDS } from "../../src/http/middleware/send-rate-limit";

const toml = readFileSync(new URL("../../wrangler.toml", import.meta.url), "utf8");

describe("wrangler.toml", () => {
  it("declares SEND_RATE_LIMIT with the period the 429's Retry-After promises", () => {
    const block = /\[\[ratelimits\]\]\s*name = "SEND_RATE_LIMIT"[^[]*?simple = \{ limit = (\d+), period = (\d+) \}/.exec(toml);
    expect(block, "a [[ratelimits]] block named SEND_RATE_LIMIT").not.toBeNull();
    expect(Number(block![2])).toBe(SEND_RATE_LIMIT_PERIOD_SECONDS);
  });
});
