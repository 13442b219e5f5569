// The pure parts of webhooks: which endpoints are allowed, the retry verdicts, bounce subtypes, the
// payload, the signature (checked by the standardwebhooks package), pagination and the schedule setting.
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config";
import { paginationSchema } from "../../src/core/pagination";
import { validate } from "../../src/core/schema";
import { checkEndpoint } from "../../src/core/webhook-endpoint";
import { bounceSubType, lastEventOf, webhookPayload } from "../../src/core/webhook-events";
import { judgeWebhookAttempt, retryAfterSeconds } from "../../src/core/webhook-retry";
import { newSigningSecret, signatureHeaders } from "../../src/core/webhook-signature";

const production = { development: false };
const development = { development: true };

describe("webhook endpoints", () => {
  it("allow https to a public host name or address", () => {
    for (const url of ["https://hooks.example.com/mailroom", "https://hooks.example.com:8443/x?token=1", "https://8.8.8.8/x", "https://[2606:4700::1111]/x", "https://[2002:808:808::1]/x", "https://[3fff:1000::1]/x", "https://[3ff0::1]/x", "https://xn--bcher-kva.example/x", "https://hooks.example.com./x"]) {
      expect(checkEndpoint(url, production), url).toMatchObject({ ok: true });
    }
  });

  it("refuse every private, loopback, link-local, shared, multicast, reserved and unspecified address, in every spelling", () => {
    const refused = [
      "https://127.0.0.1/", "https://127.1.2.3/", "https://0x7f.1/", "https://2130706433/", "https://017700000001/",
      "https://10.0.0.1/", "https://172.16.0.1/", "https://172.31.255.255/", "https://192.168.1.1/", "https://100.64.0.1/", "https://100.127.255.255/",
      "https://169.254.169.254/", "https://0.0.0.0/", "https://0.1.2.3/", "https://224.0.0.1/", "https://239.255.255.250/", "https://240.0.0.1/", "https://255.255.255.255/",
      "https://192.0.2.1/", "https://198.18.0.1/", "https://198.51.100.1/", "https://203.0.113.1/", "https://192.0.0.8/",
      "https://[::1]/", "https://[::]/", "https://[fc00::1]/", "https://[fd12:3456::1]/", "https://[fe80::1]/", "https://[febf::1]/", "https://[fec0::1]/", "https://[ff02::1]/",
      "https://[::ffff:127.0.0.1]/", "https://[::ffff:10.0.0.1]/", "https://[::ffff:a9fe:a9fe]/", "https://[::127.0.0.1]/", "https://[64:ff9b::10.0.0.1]/", "https://[2001:db8::1]/",
      "https://localhost/", "https://LOCALHOST./", "https://api.localhost/", "https://intranet/", "https://localhost../", "https://127.0.0.1../",
      // 6to4 carrying a private address, Teredo and the rest of 2001::/23, NAT64, IPv4-translated, reserved ::/8 and 5f00::, 3fff::/20
      "https://[2002:7f00:1::]/", "https://[2002:a9fe:a9fe::]/", "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "https://[2001::5601:5601]/",
      "https://[64:ff9b:1::a9fe:a9fe]/", "https://[::ffff:0:127.0.0.1]/", "https://[::1:0:0]/", "https://[::ffff:1:7f00:1]/", "https://[5f00::]/", "https://[3fff::1]/",
      "https://[2001:2::1]/", "https://[2001:10::1]/", "https://192.88.99.1/",
      "https://metadata.google.internal/", "https://printer.local/", "https://nas.home.arpa/", "https://a..example.com/",
    ];
    for (const url of refused) expect(checkEndpoint(url, production), url).toMatchObject({ ok: false });
  });

  it("refuse other schemes, user info and overlong URLs", () => {
    expect(checkEndpoint("http://hooks.example.com/", production)).toEqual({ ok: false, message: "must be an https:// URL" });
    expect(checkEndpoint("ftp://hooks.example.com/", development)).toMatchObject({ ok: false });
    expect(checkEndpoint("https://u:p@hooks.example.com/", production)).toEqual({ ok: false, message: "must not carry a user name or password" });
    expect(checkEndpoint("https://u@hooks.example.com/", development)).toMatchObject({ ok: false });
    expect(checkEndpoint(`https://hooks.example.com/${"a".repeat(2100)}`, production)).toMatchObject({ ok: false, message: "must be at most 2048 characters" });
    expect(checkEndpoint("hooks.example.com/x", production)).toMatchObject({ ok: false, message: "must be an absolute URL" });
  });

  it("allow http and loopback in development only, never the other private ranges", () => {
    expect(checkEndpoint("http://127.0.0.1:8025/webhooks", development)).toMatchObject({ ok: true });
    expect(checkEndpoint("http://localhost:8025/webhooks", development)).toMatchObject({ ok: true });
    expect(checkEndpoint("https://[::1]:8025/", development)).toMatchObject({ ok: true });
    expect(checkEndpoint("http://10.0.0.1/", development)).toMatchObject({ ok: false });
    expect(checkEndpoint("http://169.254.169.254/", development)).toMatchObject({ ok: false });
  });
});

describe("webhook attempt verdicts", () => {
  const delays = [5, 300, 1800];
  const now = Date.parse("2026-12-02T12:00:00Z");

  it("end on any 2xx, disable on 410, and retry everything else on the schedule until it is used up", () => {
    expect(judgeWebhookAttempt({ status: 204, retryAfter: null }, 1, delays, now)).toEqual({ kind: "success" });
    expect(judgeWebhookAttempt({ status: 410, retryAfter: null }, 1, delays, now)).toEqual({ kind: "gone" });
    expect(judgeWebhookAttempt({ status: 500, retryAfter: null }, 1, delays, now)).toEqual({ kind: "retry", delaySeconds: 5 });
    expect(judgeWebhookAttempt({ status: 301, retryAfter: null }, 2, delays, now)).toEqual({ kind: "retry", delaySeconds: 300 });
    expect(judgeWebhookAttempt({ status: 0, error: "timeout" }, 3, delays, now)).toEqual({ kind: "retry", delaySeconds: 1800 });
    expect(judgeWebhookAttempt({ status: 500, retryAfter: null }, 4, delays, now)).toEqual({ kind: "failed" });
    expect(judgeWebhookAttempt({ status: 299, retryAfter: null }, 4, delays, now)).toEqual({ kind: "success" });
    expect(judgeWebhookAttempt({ status: 300, retryAfter: null }, 4, delays, now)).toEqual({ kind: "failed" });
  });

  it("honour Retry-After on 429 and 503 only, never shorter than the schedule nor longer than its longest delay", () => {
    expect(judgeWebhookAttempt({ status: 429, retryAfter: "120" }, 1, delays, now)).toEqual({ kind: "retry", delaySeconds: 120 });
    expect(judgeWebhookAttempt({ status: 503, retryAfter: "1" }, 2, delays, now)).toEqual({ kind: "retry", delaySeconds: 300 });
    expect(judgeWebhookAttempt({ status: 503, retryAfter: "999999" }, 1, delays, now)).toEqual({ kind: "retry", delaySeconds: 1800 });
    expect(judgeWebhookAttempt({ status: 500, retryAfter: "120" }, 1, delays, now)).toEqual({ kind: "retry", delaySeconds: 5 });
    expect(judgeWebhookAttempt({ status: 429, retryAfter: "soon" }, 1, delays, now)).toEqual({ kind: "retry", delaySeconds: 5 });
  });

  it("read Retry-After as seconds or an HTTP date", () => {
    expect(retryAfterSeconds("120", now)).toBe(120);
    expect(retryAfterSeconds(" 7 ", now)).toBe(7);
    expect(retryAfterSeconds("Wed, 02 Dec 2026 12:01:00 GMT", now)).toBe(60);
    expect(retryAfterSeconds("Wed, 02 Dec 2026 11:00:00 GMT", now)).toBe(0);
    expect(retryAfterSeconds("-5", now)).toBeUndefined();
    expect(retryAfterSeconds(null, now)).toBeUndefined();
    expect(retryAfterSeconds("", now)).toBeUndefined();
  });
});

describe("webhook events", () => {
  it("tell a bounce's subType from its enhanced status code", () => {
    for (const code of ["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10"]) expect(bounceSubType(code), code).toBe("NoEmail");
    expect(bounceSubType("5.2.2")).toBe("MailboxFull");
    expect(bounceSubType("5.3.4")).toBe("MessageTooLarge");
    expect(bounceSubType("5.2.4")).toBe("MessageTooLarge");
    expect(bounceSubType("5.7.1")).toBe("ContentRejected");
    expect(bounceSubType("5.6.0")).toBe("ContentRejected");
    for (const code of ["5.1.0", "5.1.4", "5.2.1", "5.4.4"]) expect(bounceSubType(code), code).toBe("General");
    expect(bounceSubType(null, 550)).toBe("General");
    expect(bounceSubType(null)).toBe("Undetermined");
  });

  it("name last_event as Resend does", () => {
    expect(lastEventOf("accepted", "queued")).toBe("queued");
    expect(lastEventOf("accepted", "scheduled")).toBe("scheduled");
    expect(lastEventOf("rescheduled", "queued")).toBe("queued");
    expect(lastEventOf("rescheduled", "scheduled")).toBe("scheduled");
    expect(lastEventOf("deferred", "retrying")).toBe("delivery_delayed");
    for (const type of ["sent", "bounced", "failed", "canceled"] as const) expect(lastEventOf(type, "failed")).toBe(type);
    expect(lastEventOf(null, "sending")).toBe("queued");
  });

  it("carry Resend's payload, with the bounce or failure and the recipient where there is one", () => {
    const message = { id: "m1", messageId: "<m1@x.test>", from: { name: "Acme", address: "no@x.test" }, to: [{ name: "Ada", address: "ada@x.test" }], subject: "Hi", tags: [{ name: "k", value: "v" }], createdAt: "2026-12-02T00:00:00.000Z" };
    const event = { at: "2026-12-02T00:00:01.000Z", attempt: 1, smtpCode: 550, detail: "RCPT TO:<ada@x.test> answered 550 5.1.1 unknown", recipient: "ada@x.test", enhancedCode: "5.1.1" };
    expect(webhookPayload("email.bounced", message, event)).toEqual({
      type: "email.bounced",
      created_at: event.at,
      data: {
        email_id: "m1",
        created_at: message.createdAt,
        from: "Acme <no@x.test>",
        to: ["ada@x.test"],
        subject: "Hi",
        message_id: "<m1@x.test>",
        tags: { k: "v" },
        recipient: "ada@x.test",
        bounce: { type: "Permanent", subType: "NoEmail", message: event.detail },
      },
    });
    const failed = webhookPayload("email.failed", message, { ...event, recipient: null, detail: "retry window ended" });
    expect(failed.data).toMatchObject({ failed: { reason: "retry window ended" } });
    expect(failed.data).not.toHaveProperty("recipient");
    expect(failed.data).not.toHaveProperty("bounce");
    expect(webhookPayload("email.sent", message, { ...event, recipient: null }).data).toEqual({ email_id: "m1", created_at: message.createdAt, from: "Acme <no@x.test>", to: ["ada@x.test"], subject: "Hi", message_id: "<m1@x.test>", tags: { k: "v" } });
  });
});

describe("webhook signatures", () => {
  it("verify with the standardwebhooks package, with each of two secrets after a rotation", async () => {
    const [current, previous] = [newSigningSecret(), newSigningSecret()];
    expect(current).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const body = JSON.stringify({ type: "email.sent", data: { email_id: "é" } });
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = await signatureHeaders({ id: "evt-1", timestamp, body, secrets: [current, previous] });
    expect(headers).toMatchObject({ "webhook-id": "evt-1", "webhook-timestamp": String(timestamp), "svix-id": "evt-1", "svix-timestamp": String(timestamp) });
    expect(headers["svix-signature"]).toBe(headers["webhook-signature"]);
    expect(new Webhook(current).verify(body, headers)).toEqual(JSON.parse(body));
    expect(new Webhook(previous).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(newSigningSecret()).verify(body, headers)).toThrow();
    expect(() => new Webhook(current).verify(`${body} `, headers)).toThrow();
  });
});

describe("pagination", () => {
  it("defaults to 20, takes 1–100 and after or before, and refuses anything else", () => {
    expect(validate(paginationSchema, {})).toEqual({ ok: true, value: { limit: 20 } });
    expect(validate(paginationSchema, { limit: "100", after: "x" })).toEqual({ ok: true, value: { limit: 100, after: "x" } });
    expect(validate(paginationSchema, { limit: "1", before: "y" })).toEqual({ ok: true, value: { limit: 1, before: "y" } });
    for (const query of [{ limit: "0" }, { limit: "101" }, { limit: "1.5" }, { limit: "-1" }, { limit: "" }, { after: "a", before: "b" }, { after: "" }, { page: "2" }]) {
      expect(validate(paginationSchema, query).ok, JSON.stringify(query)).toBe(false);
    }
  });
});

describe("WEBHOOK_RETRY_DELAYS_SECONDS", () => {
  const base = { SMTP_HOST: "smtp.example.com", MAIL_FROM: "a@example.com", API_KEYS: `k:${"a".repeat(64)}` };
  const problems = (env: Record<string, string>) => {
    try {
      parseConfig({ ...base, ...env });
      return [];
    } catch (error) {
      return (error as { problems: string[] }).problems;
    }
  };

  it("defaults to Resend's schedule and takes 1 to 20 delays of at most 12 h", () => {
    expect(parseConfig(base).webhookRetryDelaysSeconds).toEqual([5, 300, 1800, 7200, 18000, 36000, 36000]);
    expect(parseConfig({ ...base, WEBHOOK_RETRY_DELAYS_SECONDS: "1,2" }).webhookRetryDelaysSeconds).toEqual([1, 2]);
    expect(problems({ WEBHOOK_RETRY_DELAYS_SECONDS: "5, 10" })[0]).toMatch(/^WEBHOOK_RETRY_DELAYS_SECONDS: must be 1 to 20 whole numbers/);
    expect(problems({ WEBHOOK_RETRY_DELAYS_SECONDS: Array(21).fill("1").join(",") })).toHaveLength(1);
    expect(problems({ WEBHOOK_RETRY_DELAYS_SECONDS: "43201" })[0]).toMatch(/at most 43200/);
  });

  it("refuses a zero delay outside development", () => {
    expect(problems({ WEBHOOK_RETRY_DELAYS_SECONDS: "0,5" })).toEqual([
      "WEBHOOK_RETRY_DELAYS_SECONDS: 0 is only allowed with ENVIRONMENT=development (an endpoint that is down would be retried in a tight loop)",
    ]);
    expect(problems({ WEBHOOK_RETRY_DELAYS_SECONDS: "0,5", ENVIRONMENT: "development" })).toEqual([]);
  });
});
