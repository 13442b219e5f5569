// A bad deploy (missing or invalid settings) must not lose mail or leak internals: the API answers a
// plain 500, queued jobs are kept for later, and the log names the wrong variables.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import mailroom from "../../src/index";
import { API_KEY, captureLogs, fetchWorker } from "../helpers/api";
import { insertQueuedMessage, loadMessage, runQueue } from "../helpers/factories";

describe("misconfiguration", () => {
  it("keeps every queued job (retryAll, backing off by redeliveries), counts no attempt and logs which settings are wrong", async () => {
    const { id } = await insertQueuedMessage();
    const logs = captureLogs();
    let retryAll: ReturnType<typeof vi.spyOn> | undefined;
    try {
      const { result } = await runQueue("mailroom-outbox", [id], { SMTP_HOST: "", SMTP_SECURITY: "ssl" }, (batch) => {
        Object.defineProperty(batch.messages[0]!, "attempts", { value: 3 });
        retryAll = vi.spyOn(batch, "retryAll");
      });
      expect(result.retryBatch.retry).toBe(true);
      expect(result.explicitAcks).toEqual([]);
    } finally {
      logs.restore();
    }
    expect(retryAll).toHaveBeenCalledWith({ delaySeconds: 120 }); // the default policy: 30 s · 2²
    expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
    const entry = JSON.parse(logs.lines.find((l) => l.includes("misconfigured"))!);
    expect(entry.level).toBe("error");
    expect(entry.problems.join(" ")).toMatch(/SMTP_HOST: required.*SMTP_SECURITY: must be tls, starttls or none/);
  });

  it("backs a misconfigured batch off by its most redelivered job", async () => {
    const [a, b] = [await insertQueuedMessage(), await insertQueuedMessage()];
    const logs = captureLogs();
    let retryAll: ReturnType<typeof vi.spyOn> | undefined;
    try {
      await runQueue("mailroom-outbox", [a.id, b.id], { SMTP_HOST: "" }, (batch) => {
        Object.defineProperty(batch.messages[0]!, "attempts", { value: 4 });
        Object.defineProperty(batch.messages[1]!, "attempts", { value: 1 });
        retryAll = vi.spyOn(batch, "retryAll");
      });
    } finally {
      logs.restore();
    }
    expect(retryAll).toHaveBeenCalledWith({ delaySeconds: 240 }); // 30 s · 2³, not the other job's 30 s
  });

  it("answers 500 internal_error without details, and logs the problem", async () => {
    const logs = captureLogs();
    let res: Response;
    try {
      res = await mailroom.fetch(
        new Request("https://mailroom.test/v1/emails/x", { headers: { Authorization: `Bearer ${API_KEY}` } }),
        { ...env, MAIL_FROM: "" } as Env,
        createExecutionContext(),
      );
    } finally {
      logs.restore();
    }
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ statusCode: 500, name: "internal_error", message: "internal error", error: { code: "internal_error", message: "internal error" } });
    const entry = JSON.parse(logs.lines.find((l) => l.includes("misconfigured"))!);
    expect(entry.error.message).toContain("MAIL_FROM: required");
  });

  it("/healthz answers 503 with the names of the settings that cannot work, never their values", async () => {
    const broken = { ...env, SMTP_HOST: "", DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "9000", API_KEYS: "secret-looking-value" } as Env;
    const res = await fetchWorker(new Request("https://mailroom.test/healthz"), broken);
    expect(res.status).toBe(503);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ status: "misconfigured", settings: ["SMTP_HOST", "API_KEYS"] });
    expect(text).not.toContain("secret-looking-value");
    // Fixed, it is ok again (the settings are read once per env object).
    const lease = await fetchWorker(new Request("https://mailroom.test/healthz"), { ...env, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "9000" } as Env);
    expect(await lease.json()).toEqual({ status: "misconfigured", settings: ["DELIVERY_LEASE_SECONDS"] });
    expect((await fetchWorker(new Request("https://mailroom.test/healthz"))).status).toBe(200);
  });
});
