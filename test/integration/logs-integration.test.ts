// What the service writes to its logs during a real accept and delivery: structured JSON lines with
// the documented fields, and no recipient, subject, body or key in any of them.
import { describe, expect, inject, it, vi } from "vitest";
import { API_KEY, api, captureLogs, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage } from "../helpers/factories";
import { SMTP_PASS, SMTP_USER } from "../helpers/smtp-fixtures";

describe("logs", () => {
  it("carry request and delivery fields but no content, recipients or keys", async () => {
    const { lines, restore } = captureLogs();
    try {
      const to = uniqueRecipient("privacy");
      const res = await api("/v1/emails", { method: "POST", json: { to, subject: "Top secret subject", text: "Top secret body" } });
      expect(res.status).toBe(202);
      const { id } = await insertQueuedMessage({ to, subject: "Another secret subject", text: "Another secret body" });
      await deliver([id]);
      await vi.waitFor(() => expect(lines.some((l) => l.includes('"msg":"request"'))).toBe(true));

      const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(entries.find((e) => e.msg === "request")).toMatchObject({
        level: "info",
        request_id: expect.any(String),
        method: "POST",
        path: "/v1/emails",
        status: 202,
        latency_ms: expect.any(Number),
      });
      expect(entries.find((e) => e.msg === "delivery attempt" && e.email_id === id)).toMatchObject({ level: "info", email_id: id, attempt: 1, smtp_code: 250, outcome: "sent" });
      // The queued job carries the accepting request's id, so a delivery's log lines join its request's.
      const { id: postedId } = await res.json<{ id: string }>();
      const requestId = entries.find((e) => e.msg === "email accepted" && e.email_id === postedId)!.request_id;
      await vi.waitFor(() => expect(lines.some((l) => l.includes(`"email_id":"${postedId}"`) && l.includes("delivery attempt"))).toBe(true));
      const deliveryLine = lines.map((l) => JSON.parse(l)).find((e) => e.msg === "delivery attempt" && e.email_id === postedId);
      expect(deliveryLine.request_id).toBe(requestId);
      const all = lines.join("\n");
      for (const secret of [to, to.split("@")[0]!, "secret", API_KEY]) expect(all).not.toContain(secret);
    } finally {
      restore();
    }
  });

  it("hold no secret on the paths that handle one: wrong keys, SMTP AUTH (accepted and refused), TLS failures, headers and bcc", async () => {
    const smtp = inject("smtp");
    const { lines, restore } = captureLogs();
    const [to, hidden] = [uniqueRecipient("logsecret"), uniqueRecipient("logbcc")];
    const secrets = [to, to.split("@")[0]!, hidden, hidden.split("@")[0]!, "Confidential subject", "Confidential body", "confidential-header-value", SMTP_PASS, "wrong-password", API_KEY, "a-wrong-api-key"];
    try {
      expect((await api("/v1/emails", { method: "POST", key: "a-wrong-api-key", json: { to, subject: "x", text: "x" } })).status).toBe(401);
      const bad = await api("/v1/emails", { method: "POST", json: { to, subject: "Confidential subject", text: "Confidential body", headers: { From: "confidential-header-value" } } });
      expect(bad.status).toBe(422);
      const ok = await api("/v1/emails", {
        method: "POST",
        json: { to, bcc: hidden, subject: "Confidential subject", text: "Confidential body", headers: { "X-Note": "confidential-header-value" }, scheduled_at: new Date(Date.now() + 3600_000).toISOString() },
      });
      expect(ok.status).toBe(202);
      const starttls = { SMTP_PORT: String(smtp.starttls.smtpPort), SMTP_SECURITY: "starttls", SMTP_USER };
      for (const [relay, pass] of [[starttls, SMTP_PASS], [starttls, "wrong-password"], [{ SMTP_PORT: String(smtp.untrustedTls.smtpPort), SMTP_SECURITY: "tls", SMTP_USER }, SMTP_PASS]] as const) {
        const { id } = await insertQueuedMessage({ to: [to, hidden], subject: "Confidential subject", text: "Confidential body" });
        await deliver([id], { ...relay, SMTP_PASS: pass });
      }
      const entries = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(entries.map((e) => e.outcome)).toEqual(expect.arrayContaining(["sent", "retry"]));
      const all = lines.join("\n");
      for (const secret of secrets) expect(all).not.toContain(secret);
      expect(all).not.toContain(btoa(`\0${SMTP_USER}\0${SMTP_PASS}`)); // the AUTH PLAIN exchange
    } finally {
      restore();
    }
  });
});
