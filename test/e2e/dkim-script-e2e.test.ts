// `npm run dkim`: the key it prints is one Mailroom accepts, and mail signed with it verifies (mailauth)
// against the DNS record it prints.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { dkimVerify } from "mailauth/lib/dkim/verify";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config";
import { signMessage } from "../../src/core/dkim";
import { importDkimKey } from "../../src/core/dkim-key";

const run = (...args: string[]) => promisify(execFile)(process.execPath, ["scripts/dkim.mjs", ...args]);
const base = { SMTP_HOST: "smtp.relay.example", MAIL_FROM: "Acme <noreply@acme.example>", API_KEYS: `app:${"a".repeat(64)}` };

describe("npm run dkim", () => {
  it.each(["rsa", "ed25519"])("%s: prints a key Mailroom takes and the TXT record that verifies its signatures", async (algorithm) => {
    const { stdout } = await run(algorithm, "mr2026", "acme.example");
    const secret = /DKIM_PRIVATE_KEY[^\n]*\n {2}(\S+)/.exec(stdout)![1]!;
    const [, name, strings] = /^ {2}(\S+)\. TXT (.+)$/m.exec(stdout)!;
    expect(name).toBe("mr2026._domainkey.acme.example");
    const record = [...strings!.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("");
    expect(record).toMatch(new RegExp(`^v=DKIM1; k=${algorithm}; p=[A-Za-z0-9+/]+=*$`));
    const { dkim } = parseConfig({ ...base, DKIM_DOMAIN: "acme.example", DKIM_SELECTOR: "mr2026", DKIM_PRIVATE_KEY: secret });
    const key = await importDkimKey(dkim!.key);
    const message = "From: Acme <noreply@acme.example>\r\nTo: you@example.com\r\nSubject: Hello\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@acme.example>\r\n\r\nHello\r\n";
    const signed = await signMessage(message, { domain: dkim!.domain, selector: dkim!.selector, algorithm: dkim!.key.algorithm, key });
    const resolver = async (lookup: string) => {
      if (lookup !== name) throw Object.assign(new Error("not found"), { code: "ENOTFOUND" });
      return [[record]];
    };
    const { results } = await dkimVerify(signed, { resolver });
    expect(results.map((r) => r.status.result)).toEqual(["pass"]);
  });

  it("refuses an unknown key type or a bad selector, printing no key", async () => {
    for (const args of [["dsa"], ["rsa", "bad_selector"], ["ed25519", "s", "not a domain"]]) {
      const failed = await run(...args).catch((error: { code: number; stdout: string }) => error);
      expect(failed).toMatchObject({ code: 2, stdout: "" });
    }
  });
});
