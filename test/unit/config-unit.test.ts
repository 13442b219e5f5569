import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config";
import { configProblems } from "../helpers/config";

const KEY_HASH = "62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef";
const base = { SMTP_HOST: "smtp.relay.example", MAIL_FROM: "Acme <noreply@acme.example>", API_KEYS: `web:${KEY_HASH}` };

const problems = configProblems;

describe("parseConfig", () => {
  it("applies defaults and treats empty vars as unset", () => {
    const config = parseConfig({ ...base, SMTP_PORT: "", SMTP_USER: "", SMTP_SECURITY: "" });
    expect(config.smtp).toEqual({
      host: "smtp.relay.example",
      port: 587,
      security: "starttls",
      user: undefined,
      pass: undefined,
      heloName: "acme.example",
      timeoutMs: 30_000,
    });
    expect(config.mailFrom).toEqual({ name: "Acme", address: "noreply@acme.example" });
    expect(config.apiKeys).toEqual([{ name: "web", digest: expect.any(Uint8Array) }]);
    expect(config.apiKeys[0]!.digest).toHaveLength(32);
    expect(config.retry).toEqual({ baseDelaySeconds: 30, maxDelaySeconds: 3600, windowSeconds: 259_200 });
    expect(config.leaseSeconds).toBe(900);
    expect(config.sweepGraceSeconds).toBe(300);
  });

  it("reads the retry window, the claim's lease and the sweep's grace", () => {
    const config = parseConfig({ ...base, RETRY_WINDOW_SECONDS: "3600", DELIVERY_LEASE_SECONDS: "60", SWEEP_GRACE_SECONDS: "0" });
    expect(config.retry.windowSeconds).toBe(3600);
    expect(config.leaseSeconds).toBe(60);
    expect(config.sweepGraceSeconds).toBe(0);
    expect(problems({ ...base, RETRY_WINDOW_SECONDS: "0", DELIVERY_LEASE_SECONDS: "4", SWEEP_GRACE_SECONDS: "-1" })).toEqual([
      "RETRY_WINDOW_SECONDS: must be at least 1",
      "DELIVERY_LEASE_SECONDS: must be at least 5",
      "SWEEP_GRACE_SECONDS: must be at least 0",
    ]);
  });

  it("serves development pages only with ENVIRONMENT=development; production by default, anything else refused", () => {
    expect(parseConfig({ ...base, ENVIRONMENT: "" }).development).toBe(false);
    expect(parseConfig({ ...base, ENVIRONMENT: "production" }).development).toBe(false);
    expect(parseConfig({ ...base, ENVIRONMENT: "development" }).development).toBe(true);
    expect(() => parseConfig({ ...base, ENVIRONMENT: "dev" })).toThrow("ENVIRONMENT: must be production or development");
  });

  it("picks the port from the security mode unless given", () => {
    expect(parseConfig({ ...base, SMTP_SECURITY: "tls" }).smtp!.port).toBe(465);
    expect(parseConfig({ ...base, SMTP_SECURITY: "none", SMTP_HOST: "127.0.0.1" }).smtp!.port).toBe(25);
    expect(parseConfig({ ...base, SMTP_PORT: "2525" }).smtp!.port).toBe(2525);
  });

  it("names every bad field at once", () => {
    const found = problems({ SMTP_PORT: "99999", SMTP_SECURITY: "ssl", MAIL_FROM: "nobody", API_KEYS: "web:plaintext-key" });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^SMTP_HOST: required/),
        expect.stringMatching(/^SMTP_PORT: must be at most 65535/),
        expect.stringMatching(/^SMTP_SECURITY: must be tls, starttls or none/),
        expect.stringMatching(/^MAIL_FROM: "nobody" must look like/),
        expect.stringMatching(/^API_KEYS: entry 1 is not name:sha256hex/),
      ]),
    );
    expect(found.join(" ")).not.toContain("plaintext-key");
  });

  it("allows SMTP_SECURITY=none only for loopback hosts", () => {
    expect(problems({ ...base, SMTP_SECURITY: "none" })).toEqual([expect.stringMatching(/^SMTP_SECURITY: none is only allowed for loopback/)]);
    for (const host of ["127.0.0.1", "localhost", "::1"]) expect(problems({ ...base, SMTP_SECURITY: "none", SMTP_HOST: host })).toEqual([]);
  });

  it("wants SMTP_USER and SMTP_PASS together", () => {
    expect(problems({ ...base, SMTP_USER: "u" })).toEqual(["SMTP_PASS: required when SMTP_USER is set"]);
    expect(problems({ ...base, SMTP_PASS: "p" })).toEqual(["SMTP_USER: required when SMTP_PASS is set"]);
  });

  it("needs at least one API key", () => {
    expect(problems({ ...base, API_KEYS: " , " })).toEqual(["API_KEYS: no API keys configured"]);
  });

  it("reads API keys with and without sender domains (lower-cased)", () => {
    const { apiKeys } = parseConfig({ ...base, API_KEYS: ` web:${KEY_HASH} , shop:${"AB".repeat(32)}:Shop.Example|xn--bcher-kva.example ` });
    expect(apiKeys.map((k) => [k.name, k.senderDomains])).toEqual([
      ["web", undefined],
      ["shop", ["shop.example", "xn--bcher-kva.example"]],
    ]);
    expect([...apiKeys[1]!.digest]).toEqual(Array(32).fill(0xab));
  });

  it.each([
    ["an empty domain list", `shop:${KEY_HASH}:`],
    ["an empty domain in the list", `shop:${KEY_HASH}:shop.example|`],
    ["a domain without a dot", `shop:${KEY_HASH}:localhost`],
    ["a label over 63 characters", `shop:${KEY_HASH}:${"a".repeat(64)}.example`],
    ["a label starting with a hyphen", `shop:${KEY_HASH}:-shop.example`],
    ["an address instead of a domain", `shop:${KEY_HASH}:ops@shop.example`],
    ["a non-ASCII domain (IDNs go as punycode)", `shop:${KEY_HASH}:bücher.example`],
  ])("refuses sender domains with %s", (_name, entry) => {
    expect(problems({ ...base, API_KEYS: entry })).toEqual(["API_KEYS: entry 1 (shop): its sender domains must be domain names separated by |"]);
  });

  it("refuses two keys with one name, which would share their messages", () => {
    expect(problems({ ...base, API_KEYS: `web:${KEY_HASH},web:${"ab".repeat(32)}` })).toEqual(["API_KEYS: entry 2 repeats the name web; each key needs its own"]);
  });

  it("refuses two entries with the same key, whose second entry's sender domains would never apply", () => {
    expect(problems({ ...base, API_KEYS: `web:${KEY_HASH},shop:${KEY_HASH.toUpperCase()}:shop.example` })).toEqual([
      "API_KEYS: entry 2 (shop) has the same key digest as web; each key must be different",
    ]);
  });
});

describe("settings that cannot work", () => {
  it("refuse a lease too short to wait SMTP_TIMEOUT_MS for the reply to the final dot, naming both", () => {
    // 60 s leaves 48 s after the recording margin (a fifth): enough for 30 s, not for 50 s.
    expect(problems({ ...base, DELIVERY_LEASE_SECONDS: "60", SMTP_TIMEOUT_MS: "30000" })).toEqual([]);
    expect(problems({ ...base, DELIVERY_LEASE_SECONDS: "60", SMTP_TIMEOUT_MS: "48000" })).toEqual([]);
    const [problem, ...more] = problems({ ...base, DELIVERY_LEASE_SECONDS: "60", SMTP_TIMEOUT_MS: "48001" });
    expect(more).toEqual([]);
    expect(problem).toMatch(/^DELIVERY_LEASE_SECONDS: 60 s leaves an attempt 48 s .* shorter than one SMTP_TIMEOUT_MS \(48001 ms\) wait/);
    // The default lease (900 s) and the longest timeout (600 s): 15 minutes less 30 s is enough.
    expect(problems({ ...base, SMTP_TIMEOUT_MS: "600000" })).toEqual([]);
    expect(problems({ ...base, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "5000" })[0]).toMatch(/^DELIVERY_LEASE_SECONDS: 5 s leaves an attempt 4 s/);
  });

  it("refuse zero retry delays outside development, where a relay that is down would be retried in a tight loop", () => {
    expect(problems({ ...base, RETRY_BASE_DELAY_SECONDS: "0" })).toEqual([
      "RETRY_BASE_DELAY_SECONDS: 0 is only allowed with ENVIRONMENT=development (a relay that is down would be retried in a tight loop)",
    ]);
    expect(problems({ ...base, RETRY_MAX_DELAY_SECONDS: "0", ENVIRONMENT: "production" })).toHaveLength(1);
    expect(problems({ ...base, RETRY_BASE_DELAY_SECONDS: "0", RETRY_MAX_DELAY_SECONDS: "0", ENVIRONMENT: "development" })).toEqual([]);
    expect(problems({ ...base, RETRY_BASE_DELAY_SECONDS: "1" })).toEqual([]);
  });

  it("are named by setting, never by value", () => {
    try {
      parseConfig({ ...base, SMTP_HOST: "", RETRY_BASE_DELAY_SECONDS: "0", API_KEYS: "not-a-key" });
    } catch (error) {
      expect((error as ConfigError).settings).toEqual(["SMTP_HOST", "API_KEYS"]);
      return;
    }
    throw new Error("parseConfig accepted broken settings");
  });

  it("refuse a bounce address without its secret, with a +, or whose local part leaves no room for the token", () => {
    expect(problems({ ...base, BOUNCE_ADDRESS: "bounces@mail.example.com" })).toEqual(["BOUNCE_SECRET: required when BOUNCE_ADDRESS is set (it authenticates the return paths)"]);
    expect(problems({ ...base, BOUNCE_ADDRESS: "bounces@mail.example.com", BOUNCE_SECRET: "short" })[0]).toMatch(/^BOUNCE_SECRET: must be at least 32 characters/);
    expect(problems({ ...base, BOUNCE_ADDRESS: "b+x@mail.example.com", BOUNCE_SECRET: "s".repeat(32) })[0]).toMatch(/^BOUNCE_ADDRESS: must be a bare address/);
    expect(problems({ ...base, BOUNCE_ADDRESS: `${"b".repeat(22)}@mail.example.com`, BOUNCE_SECRET: "s".repeat(32) })[0]).toMatch(/^BOUNCE_ADDRESS: its local part must be at most 21 characters/);
    expect(problems({ ...base, BOUNCE_ADDRESS: `${"b".repeat(21)}@mail.example.com`, BOUNCE_SECRET: "s".repeat(32) })).toEqual([]);
  });
});
