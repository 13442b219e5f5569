// A bad deploy (missing or invalid settings) must not lose mail or leak internals: the API answers a
// plain 500, queued jobs are kept for later, and the log names the wrong variables.
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import mailroom from "../../src/index";
import { API_KEY, captureLogs } from "../helpers/api";
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
});
